/*
 * valueformat.c: the rules for which types may travel in binary from one
 * PostgreSQL server to another.  A binary form is safe when it holds the
 * value alone, or OIDs that are the same everywhere: built-in base types
 * (their send/receive formats have not changed since 10), enums (the
 * label), domains, ranges and multiranges over safe types, arrays of safe
 * built-in elements, composites whose fields are all of safe built-in
 * types.  Unsafe: forms that embed OIDs which differ between servers
 * (arrays of user-defined elements, composites with such fields, the reg*
 * types), and base types not built in (extensions may change their forms).
 */
#include "valueformat.h"

#include <stddef.h>
#include <string.h>

/* Domains over domains, arrays of ranges: deeper nesting than this is
 * refused rather than followed (a catalog cycle cannot happen, but a
 * bound costs nothing). */
#define MAX_DEPTH 16

static const struct {
    const char *name;
    ValueProtocol p;
} protocols[] = {
    {"auto", VALUE_PROTOCOL_AUTO},
    {"text", VALUE_PROTOCOL_TEXT},
    {"binary", VALUE_PROTOCOL_BINARY},
};

bool valueformat_parse_protocol(const char *s, ValueProtocol *out)
{
    for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
        if (strcmp(s, protocols[i].name) == 0) {
            *out = protocols[i].p;
            return true;
        }
    return false;
}

const char *valueformat_protocol_name(ValueProtocol p)
{
    for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
        if (protocols[i].p == p)
            return protocols[i].name;
    return "auto";
}

/* Built-in types whose binary form is an OID (the text form is a name):
 * regproc, regprocedure, regoper, regoperator, regclass, regtype,
 * regconfig, regdictionary, regnamespace, regrole, regcollation. */
static bool is_reg_type(uint32_t oid)
{
    static const uint32_t reg[] = {24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191};

    for (size_t i = 0; i < sizeof(reg) / sizeof(reg[0]); i++)
        if (reg[i] == oid)
            return true;
    return false;
}

static const ValueType *find(const ValueType *types, int ntypes, uint32_t oid)
{
    for (int i = 0; i < ntypes; i++)
        if (types[i].oid == oid)
            return &types[i];
    return NULL;
}

static bool safe_at(const ValueType *types, int ntypes, uint32_t oid, int depth, const char **why)
{
    const ValueType *t = find(types, ntypes, oid);

    if (!t || depth > MAX_DEPTH) {
        *why = "its definition could not be read from the source";
        return false;
    }
    if (!t->has_send)
        return true; /* pgoutput sends it as text */
    if (!t->has_receive) {
        *why = "it has no binary receive function";
        return false;
    }
    switch (t->typtype) {
    case 'e':
        return true; /* the label, as in text */
    case 'd':
        return safe_at(types, ntypes, t->base, depth + 1, why);
    case 'r':
    case 'm':
        return safe_at(types, ntypes, t->sub, depth + 1, why);
    case 'c':
        for (int i = 0; i < t->nfields; i++) {
            if (t->fields[i] >= VALUEFORMAT_FIRST_NORMAL_OID) {
                *why = "the binary form of a composite embeds the OIDs of its fields' types, and "
                       "a field's type is user-defined (its OID differs between servers)";
                return false;
            }
            if (!safe_at(types, ntypes, t->fields[i], depth + 1, why))
                return false;
        }
        return true;
    case 'b':
        break;
    default:
        *why = "it is a pseudo-type";
        return false;
    }
    if (t->elem != 0) {
        if (t->elem >= VALUEFORMAT_FIRST_NORMAL_OID) {
            *why = "the binary form of an array embeds the OID of its element type, which differs "
                   "between servers";
            return false;
        }
        return safe_at(types, ntypes, t->elem, depth + 1, why);
    }
    if (oid >= VALUEFORMAT_FIRST_NORMAL_OID) {
        *why = "it is not built into PostgreSQL, so its binary form may differ on the target";
        return false;
    }
    if (is_reg_type(oid)) {
        *why = "its binary form is an OID, which differs between servers";
        return false;
    }
    return true;
}

bool valueformat_type_safe(const ValueType *types, int ntypes, uint32_t oid, const char **why)
{
    *why = NULL;
    return safe_at(types, ntypes, oid, 0, why);
}

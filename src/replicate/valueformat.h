/*
 * valueformat.h: which column types may travel in binary (pgoutput's
 * binary option, PostgreSQL 14+) from one server to another, and the
 * --protocol choice.  Pure: the caller reads the types from the source's
 * catalog (stream.c) and hands them in.
 *
 * With binary on, pgoutput sends every column whose type has a send
 * function in binary ('b'); the option is per stream, so one unsafe type
 * among the published columns makes the whole stream text.
 */
#ifndef PGRELOCATE_VALUEFORMAT_H
#define PGRELOCATE_VALUEFORMAT_H

#include <stdbool.h>
#include <stdint.h>

/* Below this OID a type is built into PostgreSQL (FirstNormalObjectId):
 * the same OID and binary form on every server version. */
#define VALUEFORMAT_FIRST_NORMAL_OID 16384

typedef enum {
    VALUE_PROTOCOL_AUTO,   /* binary when every published type is safe (14+) */
    VALUE_PROTOCOL_TEXT,   /* never binary */
    VALUE_PROTOCOL_BINARY, /* binary, or refuse to stream */
} ValueProtocol;

/* "auto", "text", "binary"; false for anything else. */
bool valueformat_parse_protocol(const char *s, ValueProtocol *out);
const char *valueformat_protocol_name(ValueProtocol p);

/* One type as the source's pg_type describes it.  Every type a published
 * column's type refers to (array element, domain base, range subtype,
 * multirange's range) must be in the list given to valueformat_decide. */
typedef struct ValueType {
    uint32_t oid;
    const char *name;       /* display form (format_type) */
    char typtype;           /* 'b' base, 'c' composite, 'd' domain, 'e' enum, 'm', 'p', 'r' */
    bool has_send;          /* typsend set: pgoutput sends it in binary */
    bool has_receive;       /* typreceive set */
    uint32_t elem;          /* array element (varlena with typelem), else 0 */
    uint32_t base;          /* domain: its base type, else 0 */
    uint32_t sub;           /* range: subtype; multirange: its range type; else 0 */
    const uint32_t *fields; /* composite: its attributes' types (not dropped ones) */
    int nfields;
} ValueType;

/* Whether values of type oid keep their meaning when the source's binary
 * form is read by the target's receive function.  When not, *why (static
 * text) says why.  Types not in types are unsafe. */
bool valueformat_type_safe(const ValueType *types, int ntypes, uint32_t oid, const char **why);

#endif

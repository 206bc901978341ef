/*
 * ddl.c: the capture SQL installed on the source, the capture record read
 * back from the stream, and the replay decision for each command.  Owns no
 * connection: slot.c runs the capture SQL, apply.c runs what ddl_judge
 * decides.  The SQL lexing here knows comments, quotes and dollar quotes,
 * enough to count statements and find words; it does not parse SQL.
 */
#include "ddl.h"

#include "strbuf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- capture SQL ----
 *
 * One function for the three events.  It records the session's
 * search_path, then works under pg_catalog (set for the transaction and
 * set back: a SET clause on the function would hide the session's value
 * from it).  table_rewrite and sql_drop only
 * remember, in transaction-local settings, what ddl_command_end then
 * writes: why the table was rewritten, and whether every dropped object
 * was temporary.  Publication commands are never captured (start's own,
 * and the ALTER PUBLICATION below, which fires this trigger again); nor
 * are sessions of pgrelocate itself.  The triggers fire in origin mode
 * only: a session in replica mode (pgrelocate's own apply, after a
 * cutover) replays, it does not originate. */
static const char capture_fmt[] =
    "CREATE SCHEMA IF NOT EXISTS pgrelocate;\n"
    "CREATE OR REPLACE FUNCTION %s() RETURNS event_trigger LANGUAGE plpgsql AS $pgr$\n"
    "DECLARE\n"
    "  sp pg_catalog.text := pg_catalog.current_setting('search_path');\n"
    "  objs jsonb; temp_only boolean; r record;\n"
    "BEGIN\n"
    "  PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);\n"
    "  <<body>> BEGIN\n"
    "  IF current_setting('application_name') LIKE 'pgrelocate%%' THEN EXIT body; END IF;\n"
    "  IF TG_EVENT = 'table_rewrite' THEN\n"
    "    PERFORM set_config('pgrelocate.ddl_rewrite', (coalesce(nullif(\n"
    "      current_setting('pgrelocate.ddl_rewrite', true), ''), '0')::int\n"
    "      | pg_event_trigger_table_rewrite_reason())::text, true);\n"
    "    EXIT body;\n"
    "  END IF;\n"
    "  IF TG_EVENT = 'sql_drop' THEN\n"
    "    PERFORM set_config('pgrelocate.ddl_drop_temp', coalesce(bool_and(is_temporary\n"
    "      OR schema_name ~ '^pg_temp'), false)::text, true)\n"
    "      FROM pg_event_trigger_dropped_objects();\n"
    "    EXIT body;\n"
    "  END IF;\n"
    "  IF TG_TAG ~ 'PUBLICATION|SUBSCRIPTION' THEN EXIT body; END IF;\n"
    "  SELECT coalesce(jsonb_agg(jsonb_build_object('type', object_type,\n"
    "           'identity', object_identity)), '[]'),\n"
    "         coalesce(bool_and(schema_name ~ '^pg_temp'),\n"
    "           current_setting('pgrelocate.ddl_drop_temp', true) = 'true')\n"
    "    INTO objs, temp_only FROM pg_event_trigger_ddl_commands();\n"
    "  IF TG_TAG = 'CREATE TABLE' THEN\n"
    "    FOR r IN SELECT c.oid, c.relkind FROM pg_event_trigger_ddl_commands() d\n"
    "        JOIN pg_class c ON c.oid = d.objid\n"
    "        WHERE d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')\n"
    "          AND NOT c.relispartition AND c.relpersistence = 'p' LOOP\n"
    "      EXECUTE format('ALTER PUBLICATION %%I ADD TABLE %%s%%s', %s,\n"
    "        CASE r.relkind WHEN 'r' THEN 'ONLY ' ELSE '' END, r.oid::regclass);\n"
    "    END LOOP;\n"
    "  END IF;\n"
    "  PERFORM pg_logical_emit_message(true, '" DDL_MESSAGE_PREFIX "', jsonb_build_object(\n"
    "    'tag', TG_TAG, 'query', current_query(), 'search_path', sp, 'role', current_user,\n"
    "    'rewrite', coalesce(nullif(current_setting('pgrelocate.ddl_rewrite', true), ''),\n"
    "      '0')::int, 'temp_only', coalesce(temp_only, false), 'objects', objs)::text);\n"
    "  PERFORM set_config('pgrelocate.ddl_rewrite', '', true),\n"
    "          set_config('pgrelocate.ddl_drop_temp', '', true);\n"
    "  END;\n"
    "  PERFORM pg_catalog.set_config('search_path', sp, true);\n"
    "END $pgr$;\n"
    "DROP EVENT TRIGGER IF EXISTS %s;\n"
    "DROP EVENT TRIGGER IF EXISTS %s;\n"
    "DROP EVENT TRIGGER IF EXISTS %s;\n"
    "CREATE EVENT TRIGGER %s ON ddl_command_end EXECUTE FUNCTION %s();\n"
    "CREATE EVENT TRIGGER %s ON sql_drop EXECUTE FUNCTION %s();\n"
    "CREATE EVENT TRIGGER %s ON table_rewrite EXECUTE FUNCTION %s()";

char *ddl_capture_sql(const DdlCaptureNames *n)
{
    return xasprintf(capture_fmt, n->fn, n->pub_literal, n->on_end, n->on_drop, n->on_rewrite,
                     n->on_end, n->fn, n->on_drop, n->fn, n->on_rewrite, n->fn);
}

char *ddl_uncapture_sql(const DdlCaptureNames *n)
{
    return xasprintf("DROP EVENT TRIGGER IF EXISTS %s; DROP EVENT TRIGGER IF EXISTS %s; "
                     "DROP EVENT TRIGGER IF EXISTS %s; DROP FUNCTION IF EXISTS %s()",
                     n->on_end, n->on_drop, n->on_rewrite, n->fn);
}

/* ---- the record ---- */

static char *dup_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

bool ddl_parse(const char *body, size_t len, DdlCommand *out, char **err)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);

    memset(out, 0, sizeof(*out));
    if (!json_is_object(o)) {
        *err = xasprintf("not a JSON object: %s", o ? "another JSON value" : je.text);
        json_decref(o);
        return false;
    }
    out->tag = dup_member(o, "tag");
    out->query = dup_member(o, "query");
    out->search_path = dup_member(o, "search_path");
    out->role = dup_member(o, "role");
    out->rewrite = (int)json_integer_value(json_object_get(o, "rewrite"));
    out->temp_only = json_is_true(json_object_get(o, "temp_only"));
    json_decref(o);
    if (!out->tag || !out->query || !out->search_path) {
        *err = xstrdup("the record lacks its tag, query or search_path");
        ddl_command_free(out);
        return false;
    }
    return true;
}

void ddl_command_free(DdlCommand *c)
{
    free(c->tag);
    free(c->query);
    free(c->search_path);
    free(c->role);
    memset(c, 0, sizeof(*c));
}

/* ---- lexing ---- */

typedef enum { TOK_END, TOK_WORD, TOK_SEMI, TOK_OTHER } TokKind;

typedef struct Tok {
    TokKind kind;
    size_t start, len;
} Tok;

/* Past a dollar quote's closing tag, or the end of s. */
static size_t skip_dollar(const char *s, size_t i)
{
    size_t tag_end = i + 1, taglen;

    while (isalnum((unsigned char)s[tag_end]) || s[tag_end] == '_')
        tag_end++;
    taglen = tag_end - i + 1;
    for (size_t k = tag_end + 1; s[k]; k++)
        if (s[k] == '$' && strncmp(s + k, s + i, taglen) == 0)
            return k + taglen;
    return strlen(s);
}

/* Past a quoted string or identifier starting at s[i] == q; backslashes
 * escape in E'' strings. */
static size_t skip_quoted(const char *s, size_t i, char q, bool backslash)
{
    for (size_t k = i + 1; s[k]; k++) {
        if (backslash && s[k] == '\\' && s[k + 1])
            k++;
        else if (s[k] == q && s[k + 1] == q)
            k++;
        else if (s[k] == q)
            return k + 1;
    }
    return strlen(s);
}

/* Past whitespace and comments (nested block comments). */
static size_t skip_blank(const char *s, size_t i)
{
    for (;;) {
        while (isspace((unsigned char)s[i]))
            i++;
        if (s[i] == '-' && s[i + 1] == '-') {
            while (s[i] && s[i] != '\n')
                i++;
        } else if (s[i] == '/' && s[i + 1] == '*') {
            int depth = 1;

            for (i += 2; s[i] && depth > 0; i++) {
                if (s[i] == '/' && s[i + 1] == '*')
                    depth++, i++;
                else if (s[i] == '*' && s[i + 1] == '/')
                    depth--, i++;
            }
        } else {
            return i;
        }
    }
}

static size_t next_tok(const char *s, size_t i, Tok *t)
{
    char c;

    i = skip_blank(s, i);
    c = s[i];
    t->start = i;
    if (!c) {
        t->kind = TOK_END;
        t->len = 0;
        return i;
    }
    if ((c == 'E' || c == 'e') && s[i + 1] == '\'') {
        t->kind = TOK_OTHER;
        i = skip_quoted(s, i + 1, '\'', true);
    } else if (isalpha((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80) {
        t->kind = TOK_WORD;
        while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '$' ||
               (unsigned char)s[i] >= 0x80)
            i++;
    } else if (c == '\'' || c == '"') {
        t->kind = TOK_OTHER;
        i = skip_quoted(s, i, c, false);
    } else if (c == '$' && !isdigit((unsigned char)s[i + 1])) {
        t->kind = TOK_OTHER;
        i = skip_dollar(s, i);
    } else {
        t->kind = c == ';' ? TOK_SEMI : TOK_OTHER;
        i++;
    }
    t->len = i - t->start;
    return i;
}

static bool tok_is(const char *s, const Tok *t, const char *word)
{
    return t->kind == TOK_WORD && t->len == strlen(word) &&
           strncasecmp(s + t->start, word, t->len) == 0;
}

int ddl_count_statements(const char *query)
{
    int n = 0;
    bool empty = true;
    Tok t;

    for (size_t i = next_tok(query, 0, &t);; i = next_tok(query, i, &t)) {
        if (t.kind == TOK_END || t.kind == TOK_SEMI) {
            n += !empty;
            empty = true;
            if (t.kind == TOK_END)
                return n;
        } else {
            empty = false;
        }
    }
}

char *ddl_strip_concurrently(const char *query)
{
    Tok t;

    for (size_t i = next_tok(query, 0, &t); t.kind != TOK_END; i = next_tok(query, i, &t))
        if (tok_is(query, &t, "CONCURRENTLY")) {
            StrBuf sb;
            size_t rest = t.start + t.len;

            while (query[rest] == ' ')
                rest++;
            strbuf_init(&sb);
            strbuf_append_len(&sb, query, t.start);
            strbuf_append(&sb, query + rest);
            return strbuf_detach(&sb);
        }
    return NULL;
}

/* Does the query's first word equal the tag's first word?  When not, the
 * command ran inside something else (a function, a DO block, CALL), and
 * the query string is not the command. */
static bool starts_like_tag(const char *query, const char *tag)
{
    size_t taglen = strcspn(tag, " ");
    Tok t;

    next_tok(query, 0, &t);
    return t.kind == TOK_WORD && t.len == taglen && strncasecmp(query + t.start, tag, taglen) == 0;
}

/* Does a USING clause call a function (which may be volatile)? */
static bool using_calls(const char *query)
{
    bool after_using = false;
    Tok t;

    for (size_t i = next_tok(query, 0, &t); t.kind != TOK_END; i = next_tok(query, i, &t)) {
        if (tok_is(query, &t, "USING"))
            after_using = true;
        else if (after_using && t.kind == TOK_OTHER && query[t.start] == '(')
            return true;
    }
    return false;
}

/* SQL value functions: a default made of one is evaluated when it runs */
static const char *const value_functions[] = {
    "CURRENT_TIMESTAMP",     "CURRENT_DATE",    "CURRENT_TIME",
    "LOCALTIMESTAMP",        "LOCALTIME",       "CURRENT_USER",
    "SESSION_USER",          "CURRENT_ROLE",    "USER",
    "CURRENT_SCHEMA",        "CURRENT_CATALOG", "NOW",
    "TRANSACTION_TIMESTAMP",
};

static bool is_value_function(const char *s, const Tok *t)
{
    for (size_t i = 0; i < sizeof(value_functions) / sizeof(value_functions[0]); i++)
        if (tok_is(s, t, value_functions[i]))
            return true;
    return false;
}

/* Does an ADD COLUMN give a default that is not a constant (a function
 * call or an SQL value function)?  A stable one (now()) fills the existing
 * rows without a rewrite, with its value at that moment: replayed later,
 * the target's rows would get another.  Conservative: DEFAULT lower('x')
 * counts too. */
static bool adds_computed_default(const char *query)
{
    bool in_add = false, in_default = false;
    int depth = 0;
    Tok t;

    for (size_t i = next_tok(query, 0, &t); t.kind != TOK_END; i = next_tok(query, i, &t)) {
        char c = t.kind == TOK_OTHER ? query[t.start] : 0;

        if (depth == 0 && c == ',')
            in_add = in_default = false;
        else if (depth == 0 && tok_is(query, &t, "ADD"))
            in_add = true;
        else if (in_add && depth == 0 && tok_is(query, &t, "DEFAULT"))
            in_default = true;
        else if (in_default && (c == '(' || is_value_function(query, &t)))
            return true;
        depth += c == '(' ? 1 : c == ')' ? -1 : 0;
    }
    return false;
}

/* A stored generated column rewrites the table for its default too, but
 * its expression is immutable: the target computes the same values. */
static bool adds_generated_stored(const char *query)
{
    bool generated = false, stored = false;
    Tok t;

    for (size_t i = next_tok(query, 0, &t); t.kind != TOK_END; i = next_tok(query, i, &t)) {
        if (tok_is(query, &t, "IDENTITY"))
            return false;
        generated = generated || tok_is(query, &t, "GENERATED");
        stored = stored || tok_is(query, &t, "STORED");
    }
    return generated && stored;
}

/* Is it about a large object (ALTER LARGE OBJECT, GRANT/REVOKE/COMMENT ON
 * LARGE OBJECT)?  Their contents are not in the stream: the cutover copies
 * large objects, owner and privileges included, so apply leaves them. */
static bool on_large_object(const DdlCommand *c)
{
    bool large = false;
    Tok t;

    if (strcmp(c->tag, "ALTER LARGE OBJECT") == 0)
        return true;
    for (size_t i = next_tok(c->query, 0, &t); t.kind != TOK_END; i = next_tok(c->query, i, &t)) {
        if (large && tok_is(c->query, &t, "OBJECT"))
            return true;
        large = tok_is(c->query, &t, "LARGE");
    }
    return false;
}

/* ---- decisions ---- */

/* Re-copying one table is not built yet: a fresh start is the repair. */
#define REPAIR_FRESH                                                                               \
    "Run pgrelocate cleanup, then pgrelocate start again: the database is copied anew, with the "  \
    "change in it."

static void refuse(DdlVerdict *v, const char *reason_fmt, const char *a, const char *b,
                   const char *hint)
{
    v->action = DDL_REFUSE;
    v->reason = xasprintf(reason_fmt, a, b);
    v->hint = xstrdup(hint);
}

void ddl_judge(const DdlCommand *c, DdlVerdict *v)
{
    int nstmt = ddl_count_statements(c->query);

    memset(v, 0, sizeof(*v));
    if (c->temp_only || on_large_object(c)) {
        v->action = DDL_IGNORE;
    } else if (strcmp(c->tag, "CREATE TABLE AS") == 0 || strcmp(c->tag, "SELECT INTO") == 0) {
        refuse(v, "%s cannot be replayed exactly: its rows are not in the stream%s", c->tag, "",
               REPAIR_FRESH);
    } else if (nstmt != 1) {
        char n[16];

        snprintf(n, sizeof(n), "%d", nstmt);
        refuse(v,
               "%s came in a query string of %s statements: replaying it could run other "
               "statements twice",
               c->tag, n, "Send each schema change as a query of its own. " REPAIR_FRESH);
    } else if (!starts_like_tag(c->query, c->tag)) {
        refuse(v, "%s ran inside another command (a function, DO block or procedure)%s", c->tag, "",
               "Run schema changes as plain statements. " REPAIR_FRESH);
    } else if ((c->rewrite & DDL_REWRITE_DEFAULT) && !adds_generated_stored(c->query)) {
        refuse(v, "%s filled every row of the table with a volatile default or identity%s", c->tag,
               ": the target would get other values",
               "Add the column without a default, then set its values with UPDATE (the rows "
               "follow through the stream). " REPAIR_FRESH);
    } else if (strcmp(c->tag, "ALTER TABLE") == 0 && adds_computed_default(c->query)) {
        refuse(v, "%s added a column whose default is computed%s", c->tag,
               " (a function or CURRENT_TIMESTAMP): the existing rows got its value at that "
               "moment, the target would get another",
               "Add the column without a default or with a constant one, then set its values "
               "with UPDATE (the rows follow through the stream). " REPAIR_FRESH);
    } else if ((c->rewrite & DDL_REWRITE_TYPE) && using_calls(c->query)) {
        refuse(v, "%s changed a column's type with a USING expression that calls a function%s",
               c->tag, ": the target could get other values",
               "Change the type with a USING expression of the column alone, or with UPDATE "
               "statements. " REPAIR_FRESH);
    } else {
        v->action = DDL_REPLAY;
        if (strcmp(c->tag, "CREATE INDEX") == 0 || strcmp(c->tag, "DROP INDEX") == 0 ||
            strcmp(c->tag, "REINDEX") == 0)
            v->sql = ddl_strip_concurrently(c->query);
        if (v->sql)
            v->note = xstrdup("without CONCURRENTLY: it cannot run in the apply transaction, "
                              "and the target serves no queries yet");
        else
            v->sql = xstrdup(c->query);
    }
}

void ddl_verdict_free(DdlVerdict *v)
{
    free(v->sql);
    free(v->note);
    free(v->reason);
    free(v->hint);
    memset(v, 0, sizeof(*v));
}

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
 * cutover) replays, it does not originate.
 * Commands of an extension's script are not recorded: replaying CREATE
 * or ALTER EXTENSION runs them.
 * Two more facts go into the record, so that apply can replay one
 * statement of a query string that holds several: whether the command ran
 * nested in another (PG_CONTEXT has a line per caller), and which
 * top-level schema change of its query string it is (the statements of one
 * simple query share statement_timestamp(); the count lives in a session
 * setting, so it carries across a COMMIT inside the string).
 * Partitions join the publication too (those of published roots at
 * install, new ones when created): through their root while attached
 * (publish_via_partition_root), as themselves once detached.
 * With --tables, a new table joins only when its name matches the
 * patterns (tablefilter_regex), and a command that touches only tables
 * outside the publication is marked "outside": apply leaves it. */
static const char capture_fmt[] =
    "CREATE SCHEMA IF NOT EXISTS pgrelocate;\n"
    "CREATE OR REPLACE FUNCTION %s() RETURNS event_trigger LANGUAGE plpgsql AS $pgr$\n"
    "DECLARE\n"
    "  sp pg_catalog.text := pg_catalog.current_setting('search_path');\n"
    "  pub pg_catalog.text := %s; tables_re pg_catalog.text := %s;\n"
    "  objs jsonb; temp_only boolean; r record; ctx text; nested boolean; key text;\n"
    "  stmt int := 0; outside boolean := false;\n"
    "BEGIN\n"
    "  GET DIAGNOSTICS ctx = PG_CONTEXT;\n"
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
    "      OR schema_name ~ '^pg_temp'), false)::text, true),\n"
    "      set_config('pgrelocate.ddl_drop_outside', (tables_re IS NOT NULL\n"
    "        AND bool_or(object_type = 'table') AND NOT coalesce(bool_or(\n"
    "          object_type = 'publication relation' AND object_identity\n"
    "          LIKE '%% in publication ' || quote_ident(pub)), false))::text, true)\n"
    "      FROM pg_event_trigger_dropped_objects();\n"
    "    EXIT body;\n"
    "  END IF;\n"
    "  IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands() WHERE in_extension) THEN\n"
    "    EXIT body;\n"
    "  END IF;\n"
    "  nested := strpos(ctx, E'\\n') > 0;\n"
    "  IF NOT nested THEN\n"
    "    key := statement_timestamp()::text || ' ' || hashtext(current_query())::text;\n"
    "    stmt := CASE WHEN current_setting('pgrelocate.ddl_stmt_key', true) = key\n"
    "      THEN current_setting('pgrelocate.ddl_stmt_n')::int + 1 ELSE 1 END;\n"
    "    PERFORM set_config('pgrelocate.ddl_stmt_key', key, false),\n"
    "            set_config('pgrelocate.ddl_stmt_n', stmt::text, false);\n"
    "  END IF;\n"
    "  IF TG_TAG ~ 'PUBLICATION|SUBSCRIPTION' THEN EXIT body; END IF;\n"
    "  SELECT coalesce(jsonb_agg(jsonb_build_object('type', object_type,\n"
    "           'identity', object_identity)), '[]'),\n"
    "         coalesce(bool_and(schema_name ~ '^pg_temp'),\n"
    "           current_setting('pgrelocate.ddl_drop_temp', true) = 'true')\n"
    "    INTO objs, temp_only FROM pg_event_trigger_ddl_commands();\n"
    "  IF TG_TAG = 'CREATE TABLE' THEN\n"
    "    FOR r IN SELECT c.oid, c.relkind FROM pg_event_trigger_ddl_commands() d\n"
    "        JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace\n"
    "        WHERE d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')\n"
    "          AND c.relpersistence = 'p' AND CASE WHEN c.relispartition THEN EXISTS (\n"
    "            SELECT FROM pg_partition_ancestors(c.oid) a JOIN pg_publication_rel pr\n"
    "            ON pr.prrelid = a.relid JOIN pg_publication p ON p.oid = pr.prpubid\n"
    "            WHERE p.pubname = pub)\n"
    "          ELSE tables_re IS NULL OR n.nspname || chr(1) || c.relname ~ tables_re END LOOP\n"
    "      EXECUTE format('ALTER PUBLICATION %%I ADD TABLE %%s%%s', pub,\n"
    "        CASE r.relkind WHEN 'r' THEN 'ONLY ' ELSE '' END, r.oid::regclass);\n"
    "    END LOOP;\n"
    "  END IF;\n"
    "  IF tables_re IS NOT NULL THEN\n"
    "    SELECT coalesce(bool_and(NOT EXISTS (SELECT FROM pg_publication_rel pr\n"
    "        JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = pub\n"
    "        AND (pr.prrelid = t.rel OR pr.prrelid IN (\n"
    "          SELECT relid FROM pg_partition_ancestors(t.rel))))), false)\n"
    "      INTO outside FROM (SELECT CASE WHEN c.relkind IN ('i', 'I') THEN i.indrelid\n"
    "          ELSE c.oid END AS rel FROM pg_event_trigger_ddl_commands() d\n"
    "        JOIN pg_class c ON c.oid = d.objid LEFT JOIN pg_index i ON i.indexrelid = c.oid\n"
    "        WHERE d.classid = 'pg_class'::regclass\n"
    "          AND c.relkind IN ('r', 'p', 'i', 'I')) t;\n"
    "    outside := outside\n"
    "      OR coalesce(current_setting('pgrelocate.ddl_drop_outside', true) = 'true', false);\n"
    "  END IF;\n"
    "  PERFORM pg_logical_emit_message(true, '" DDL_MESSAGE_PREFIX "', jsonb_build_object(\n"
    "    'tag', TG_TAG, 'query', current_query(), 'search_path', sp, 'role', current_user,\n"
    "    'rewrite', coalesce(nullif(current_setting('pgrelocate.ddl_rewrite', true), ''),\n"
    "      '0')::int, 'temp_only', coalesce(temp_only, false), 'objects', objs,\n"
    "    'stmt', stmt, 'nested', nested, 'outside', outside)::text);\n"
    "  PERFORM set_config('pgrelocate.ddl_rewrite', '', true),\n"
    "          set_config('pgrelocate.ddl_drop_temp', '', true),\n"
    "          set_config('pgrelocate.ddl_drop_outside', '', true);\n"
    "  END;\n"
    "  PERFORM pg_catalog.set_config('search_path', sp, true);\n"
    "END $pgr$;\n"
    "DO $pgr$ DECLARE r record; pub pg_catalog.text := %s; BEGIN\n"
    "  FOR r IN SELECT c.oid, c.relkind FROM pg_catalog.pg_class c\n"
    "      WHERE c.relispartition AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p'\n"
    "        AND EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(c.oid) a\n"
    "          JOIN pg_catalog.pg_publication_rel pr ON pr.prrelid = a.relid\n"
    "          JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid\n"
    "          WHERE p.pubname = pub AND a.relid <> c.oid)\n"
    "        AND NOT EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr\n"
    "          JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid\n"
    "          WHERE p.pubname = pub AND pr.prrelid = c.oid) LOOP\n"
    "    EXECUTE pg_catalog.format('ALTER PUBLICATION %%I ADD TABLE %%s%%s', pub,\n"
    "      CASE r.relkind WHEN 'r' THEN 'ONLY ' ELSE '' END, r.oid::pg_catalog.regclass);\n"
    "  END LOOP;\n"
    "END $pgr$;\n"
    "DROP EVENT TRIGGER IF EXISTS %s;\n"
    "DROP EVENT TRIGGER IF EXISTS %s;\n"
    "DROP EVENT TRIGGER IF EXISTS %s;\n"
    "CREATE EVENT TRIGGER %s ON ddl_command_end EXECUTE FUNCTION %s();\n"
    "CREATE EVENT TRIGGER %s ON sql_drop EXECUTE FUNCTION %s();\n"
    "CREATE EVENT TRIGGER %s ON table_rewrite EXECUTE FUNCTION %s()";

char *ddl_capture_sql(const DdlCaptureNames *n)
{
    const char *pub = n->pub_literal, *re = n->tables_re_literal ? n->tables_re_literal : "NULL";

    return xasprintf(capture_fmt, n->fn, pub, re, pub, n->on_end, n->on_drop, n->on_rewrite,
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
    out->nested = json_is_true(json_object_get(o, "nested"));
    out->outside = json_is_true(json_object_get(o, "outside"));
    out->stmt = (int)json_integer_value(json_object_get(o, "stmt"));
    {
        json_t *objs = json_object_get(o, "objects"), *obj;
        size_t i;

        json_array_foreach(objs, i, obj)
        {
            json_t *type = json_object_get(obj, "type");

            if (!out->table && json_is_string(type) &&
                strcmp(json_string_value(type), "table") == 0)
                out->table = dup_member(obj, "identity");
        }
    }
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
    free(c->table);
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

/* One statement of a query string: s[start, end), without its semicolon. */
typedef struct Stmt {
    size_t start, end;
} Stmt;

/* The next statement of s at or after *pos; false when none is left.
 * Empty statements are skipped.  A semicolon inside a BEGIN ATOMIC body
 * (a CREATE FUNCTION or PROCEDURE in SQL, 14+) does not end the statement
 * (CASE ... END nests in it), as in psql. */
static bool next_statement(const char *s, size_t *pos, Stmt *st)
{
    bool any = false, create = false, after_begin = false;
    int depth = 0;
    Tok t;

    for (size_t i = next_tok(s, *pos, &t);; i = next_tok(s, i, &t)) {
        if (t.kind == TOK_END || (t.kind == TOK_SEMI && depth == 0)) {
            *pos = i;
            if (any || t.kind == TOK_END)
                return any;
            continue;
        }
        if (!any) {
            any = true;
            st->start = t.start;
            create = tok_is(s, &t, "CREATE");
        }
        st->end = t.start + t.len;
        if (create && after_begin && tok_is(s, &t, "ATOMIC"))
            depth++;
        else if (depth > 0 && tok_is(s, &t, "CASE"))
            depth++;
        else if (depth > 0 && tok_is(s, &t, "END"))
            depth--;
        after_begin = tok_is(s, &t, "BEGIN");
    }
}

int ddl_count_statements(const char *query)
{
    size_t pos = 0;
    int n = 0;
    Stmt st;

    while (next_statement(query, &pos, &st))
        n++;
    return n;
}

/* Is the i-th word token of statement st (from 0) word?  Tokens that are
 * not words count as positions too. */
static bool word_at(const char *s, const Stmt *st, int i, const char *word)
{
    size_t pos = st->start;
    Tok t;

    for (int k = 0;; k++) {
        pos = next_tok(s, pos, &t);
        if (t.kind == TOK_END || t.start >= st->end)
            return false;
        if (k == i)
            return tok_is(s, &t, word);
    }
}

/* Does statement st have word (outside quotes and comments)? */
static bool has_word(const char *s, const Stmt *st, const char *word)
{
    Tok t;

    for (size_t i = next_tok(s, st->start, &t); t.kind != TOK_END && t.start < st->end;
         i = next_tok(s, i, &t))
        if (tok_is(s, &t, word))
            return true;
    return false;
}

/* Does statement st have word right after an ON (GRANT ... ON DATABASE)? */
static bool on_word(const char *s, const Stmt *st, const char *word)
{
    bool after_on = false;
    Tok t;

    for (size_t i = next_tok(s, st->start, &t); t.kind != TOK_END && t.start < st->end;
         i = next_tok(s, i, &t)) {
        if (after_on && tok_is(s, &t, word))
            return true;
        after_on = tok_is(s, &t, "ON");
    }
    return false;
}

/* Statements that fire no ddl_command_end: queries, DML and utility
 * commands outside event triggers' reach. */
static const char *const no_event_words[] = {
    "SELECT",     "INSERT",  "UPDATE",   "DELETE",   "MERGE",   "WITH",       "VALUES",
    "TABLE",      "COPY",    "TRUNCATE", "SET",      "RESET",   "SHOW",       "LOCK",
    "NOTIFY",     "LISTEN",  "UNLISTEN", "ANALYZE",  "ANALYSE", "VACUUM",     "CLUSTER",
    "CHECKPOINT", "DISCARD", "EXPLAIN",  "PREPARE",  "EXECUTE", "DEALLOCATE", "DECLARE",
    "FETCH",      "MOVE",    "CLOSE",    "DO",       "CALL",    "LOAD",       "BEGIN",
    "START",      "COMMIT",  "END",      "ROLLBACK", "ABORT",   "SAVEPOINT",  "RELEASE",
    "REASSIGN",   "REINDEX",
};

/* Shared objects: event triggers do not fire for them */
static const char *const shared_words[] = {"DATABASE", "ROLE", "GROUP", "TABLESPACE"};

/* Does statement st fire ddl_command_end (a schema change the capture
 * records)?  A wrong guess shifts the count: the caller's tag check then
 * refuses, unless the statement the count lands on has the same tag (two
 * ALTER TABLEs around a statement guessed wrong). */
static bool fires_ddl_event(const char *s, const Stmt *st)
{
    bool create_alter_drop =
        word_at(s, st, 0, "CREATE") || word_at(s, st, 0, "ALTER") || word_at(s, st, 0, "DROP");
    bool grant = word_at(s, st, 0, "GRANT") || word_at(s, st, 0, "REVOKE");

    for (size_t i = 0; i < sizeof(no_event_words) / sizeof(no_event_words[0]); i++)
        if (word_at(s, st, 0, no_event_words[i]))
            return false;
    for (size_t i = 0; i < sizeof(shared_words) / sizeof(shared_words[0]); i++)
        if ((create_alter_drop && word_at(s, st, 1, shared_words[i])) ||
            ((grant || word_at(s, st, 0, "COMMENT") || word_at(s, st, 0, "SECURITY")) &&
             on_word(s, st, shared_words[i])))
            return false;
    if (create_alter_drop && ((word_at(s, st, 1, "USER") && !word_at(s, st, 2, "MAPPING")) ||
                              word_at(s, st, 1, "SYSTEM") || word_at(s, st, 1, "EVENT")))
        return false;
    /* GRANT role TO role (no ON) is about shared objects too */
    return !grant || has_word(s, st, "ON");
}

/* Do the words of tag ("CREATE INDEX") appear, in order, among the first
 * words of statement st, the first one first ("CREATE UNIQUE INDEX")? */
static bool has_tag_words(const char *s, const Stmt *st, const char *tag)
{
    const char *w = tag;
    size_t pos = st->start;
    Tok t;

    for (int k = 0; k < 12 && *w; k++) {
        size_t wlen = strcspn(w, " ");

        pos = next_tok(s, pos, &t);
        if (t.kind == TOK_END || t.start >= st->end)
            return false;
        if (t.kind == TOK_WORD && t.len == wlen && strncasecmp(s + t.start, w, wlen) == 0) {
            w += wlen;
            w += *w == ' ';
        } else if (k == 0) {
            return false;
        }
    }
    return *w == '\0';
}

char *ddl_nth_schema_statement(const char *query, int n, const char *tag, int *index)
{
    size_t pos = 0;
    int seen = 0;
    Stmt st;

    *index = 0;
    while (next_statement(query, &pos, &st)) {
        StrBuf sb;

        ++*index;
        if (!fires_ddl_event(query, &st) || ++seen < n)
            continue;
        if (!has_tag_words(query, &st, tag))
            return NULL;
        strbuf_init(&sb);
        strbuf_append_len(&sb, query + st.start, st.end - st.start);
        return strbuf_detach(&sb);
    }
    return NULL;
}

/* Does query hold a ROLLBACK (or ABORT) statement?  It takes back a
 * count of schema changes the capture kept in a session setting. */
static bool has_rollback(const char *query)
{
    size_t pos = 0;
    Stmt st;

    while (next_statement(query, &pos, &st))
        if (word_at(query, &st, 0, "ROLLBACK") || word_at(query, &st, 0, "ABORT"))
            return true;
    return false;
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

/* Is c a command of an extension's script (query is CREATE or ALTER
 * EXTENSION, the tag another)?  Replaying the extension's statement runs
 * it; a capture that records them all (before in_extension was looked at)
 * sends them. */
static bool in_extension_script(const char *query, const char *tag)
{
    size_t pos = 0;
    Stmt st;

    if (!next_statement(query, &pos, &st) ||
        !(word_at(query, &st, 0, "CREATE") || word_at(query, &st, 0, "ALTER")) ||
        !word_at(query, &st, 1, "EXTENSION"))
        return false;
    return strcmp(tag, "CREATE EXTENSION") != 0 && strcmp(tag, "ALTER EXTENSION") != 0;
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

/* The repair when the target cannot get the change exactly: a fresh
 * start copies the database anew, with the change in it. */
#define REPAIR_FRESH                                                                               \
    "Run pgrelocate cleanup, then pgrelocate start again: the database is copied anew, with the "  \
    "change in it."

/* The repair of a command whose rows the stream does not carry (a table
 * rewritten with values of that moment, rows made by a query): that table
 * has to be copied again; the whole database is, by a fresh start. */
#define REPAIR_RECOPY_FMT                                                                          \
    "%s Table %s has to be copied again, with the change in it: run pgrelocate cleanup, then "     \
    "pgrelocate start again (the database is copied anew)."

static void refuse(DdlVerdict *v, const char *reason_fmt, const char *a, const char *b,
                   const char *hint)
{
    v->action = DDL_REFUSE;
    v->reason = xasprintf(reason_fmt, a, b);
    v->hint = xstrdup(hint);
}

/* refuse, with the repair for a table to copy again (c->table). */
static void refuse_recopy(DdlVerdict *v, const DdlCommand *c, const char *reason_fmt, const char *b,
                          const char *advice)
{
    char *hint = c->table ? xasprintf(REPAIR_RECOPY_FMT, advice, c->table)
                          : xasprintf("%s " REPAIR_FRESH, advice);

    refuse(v, reason_fmt, c->tag, b, hint);
    free(hint);
}

/* The checks on the one statement that ran c: refuse into v, or set
 * v->action to DDL_REPLAY. */
static void judge_statement(const DdlCommand *c, const char *query, DdlVerdict *v)
{
    if (!starts_like_tag(query, c->tag)) {
        refuse(v, "%s ran inside another command (a function, DO block or procedure)%s", c->tag, "",
               "Run schema changes as plain statements. " REPAIR_FRESH);
    } else if ((c->rewrite & DDL_REWRITE_DEFAULT) && !adds_generated_stored(query)) {
        refuse_recopy(v, c,
                      "%s filled every row of the table with a volatile default or identity%s",
                      ": the target would get other values",
                      "Add the column without a default, then set its values with UPDATE (the "
                      "rows follow through the stream).");
    } else if (strcmp(c->tag, "ALTER TABLE") == 0 && adds_computed_default(query)) {
        refuse_recopy(v, c, "%s added a column whose default is computed%s",
                      " (a function or CURRENT_TIMESTAMP): the existing rows got its value at "
                      "that moment, the target would get another",
                      "Add the column without a default or with a constant one, then set its "
                      "values with UPDATE (the rows follow through the stream).");
    } else if ((c->rewrite & DDL_REWRITE_TYPE) && using_calls(query)) {
        refuse_recopy(v, c,
                      "%s changed a column's type with a USING expression that calls a function%s",
                      ": the target could get other values",
                      "Change the type with a USING expression of the column alone, or with "
                      "UPDATE statements.");
    } else {
        v->action = DDL_REPLAY;
    }
}

/* The statement of c's query string that ran c, into *sql (allocated;
 * NULL: the whole string is the statement), or refuse: a string of several
 * statements whose schema changes cannot be told apart exactly (a capture
 * that did not count them, a ROLLBACK that took one back, statements that
 * do not match the count).  The DML of the string is never replayed: its
 * rows come through the stream. */
static bool pick_statement(const DdlCommand *c, int nstmt, char **sql, char **note, DdlVerdict *v)
{
    char n[16];
    int index = 0;

    *sql = *note = NULL;
    if (nstmt == 1)
        return true;
    snprintf(n, sizeof(n), "%d", nstmt);
    if (c->stmt <= 0)
        refuse(v,
               "%s came in a query string of %s statements: replaying it could run other "
               "statements twice",
               c->tag, n, "Send each schema change as a query of its own. " REPAIR_FRESH);
    else if (has_rollback(c->query))
        refuse(v,
               "%s came in a query string of %s statements with a ROLLBACK: which statement "
               "ran it is not known",
               c->tag, n, "Send each schema change as a query of its own. " REPAIR_FRESH);
    else if (!(*sql = ddl_nth_schema_statement(c->query, c->stmt, c->tag, &index)))
        refuse(v,
               "%s came in a query string of %s statements, and which of them ran it cannot be "
               "told exactly",
               c->tag, n, "Send each schema change as a query of its own. " REPAIR_FRESH);
    else
        *note = xasprintf("(statement %d of %d in its query string)", index, nstmt);
    return *sql != NULL;
}

void ddl_judge(const DdlCommand *c, DdlVerdict *v)
{
    int nstmt = ddl_count_statements(c->query);
    char *own = NULL, *note = NULL, *stripped;
    const char *query = c->query;

    memset(v, 0, sizeof(*v));
    if (c->temp_only || c->outside) {
        v->action = DDL_IGNORE;
        if (c->outside)
            v->note = xstrdup("it touches only tables outside the migration (--tables)");
    } else if (strcmp(c->tag, "CREATE TABLE AS") == 0 || strcmp(c->tag, "SELECT INTO") == 0) {
        refuse_recopy(v, c, "%s cannot be replayed exactly: its rows are not in the stream%s", "",
                      "Create the table empty, then fill it with INSERT ... SELECT (the rows "
                      "follow through the stream).");
    } else if (c->nested) {
        refuse(v, "%s ran inside another command (a function, DO block or procedure)%s", c->tag, "",
               "Run schema changes as plain statements. " REPAIR_FRESH);
    } else if (pick_statement(c, nstmt, &own, &note, v)) {
        DdlCommand one = *c;

        query = own ? own : c->query;
        one.query = (char *)query;
        if (on_large_object(&one) || in_extension_script(query, c->tag))
            v->action = DDL_IGNORE;
        else
            judge_statement(c, query, v);
    }
    if (v->action == DDL_REPLAY) {
        stripped = NULL;
        if (strcmp(c->tag, "CREATE INDEX") == 0 || strcmp(c->tag, "DROP INDEX") == 0 ||
            strcmp(c->tag, "REINDEX") == 0)
            stripped = ddl_strip_concurrently(query);
        v->sql = xstrdup(stripped ? stripped : query);
        if (stripped || note)
            v->note = xasprintf("%s%s%s", note ? note : "", stripped && note ? " " : "",
                                stripped ? "without CONCURRENTLY: it cannot run in the apply "
                                           "transaction, and the target serves no queries yet"
                                         : "");
        free(stripped);
    }
    free(own);
    free(note);
}

void ddl_verdict_free(DdlVerdict *v)
{
    free(v->sql);
    free(v->note);
    free(v->reason);
    free(v->hint);
    memset(v, 0, sizeof(*v));
}

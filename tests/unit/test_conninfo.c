/*
 * test_conninfo.c: connection strings through libpq's parser (no server):
 * the display and child forms never hold a password, parse errors never
 * quote one (even when the input itself holds double quotes), extras
 * override the user's keywords, and the child form quotes values so that
 * libpq reads back exactly the same settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conninfo.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const child_extra[] = {"fallback_application_name", "pgrelocate", NULL};

static ConnInfo *must_parse(const char *text)
{
    char err[256] = "";
    ConnInfo *ci = conninfo_parse(text, err, sizeof(err));

    if (!ci)
        fail_msg("\"%s\" did not parse: %s", text, err);
    return ci;
}

typedef struct SecretCase {
    const char *text;
    const char *password;    /* what conninfo_password() returns, or NULL */
    const char *sslpassword; /* conninfo_get(ci, "sslpassword"), or NULL */
    const char *hidden[4];   /* text that no rendered form may contain */
    const char *user;        /* still shown and passed on */
} SecretCase;

static const SecretCase secret_cases[] = {
    {"postgresql://u:s3cr3t@h/db", "s3cr3t", NULL, {"s3cr3t"}, "u"},
    {"postgres://u:s3cr3t@h:5433/db?sslmode=require", "s3cr3t", NULL, {"s3cr3t"}, "u"},
    {"postgresql://u:s%33cr%33t@h/db", "s3cr3t", NULL, {"s3cr3t", "s%33cr%33t", "%33"}, "u"},
    {"postgresql://u:p%40ss%20w0rd@h/db", "p@ss w0rd", NULL, {"p@ss", "w0rd", "%40"}, "u"},
    {"postgresql://h/db?user=u&password=s3cr3t", "s3cr3t", NULL, {"s3cr3t"}, "u"},
    {"host=h user=u password=s3cr3t dbname=db", "s3cr3t", NULL, {"s3cr3t"}, "u"},
    {"password='s e c' host=h user=u", "s e c", NULL, {"s e c"}, "u"},
    {"user=u password='it\\'s\\\\x' host=h", "it's\\x", NULL, {"it's", "it\\'s"}, "u"},
    {"user=u host=h sslpassword=k3yp4ss", NULL, "k3yp4ss", {"k3yp4ss"}, "u"},
    {"user=u password=s3cr3t sslpassword=k3yp4ss", "s3cr3t", "k3yp4ss", {"s3cr3t", "k3yp4ss"}, "u"},
};

static void assert_hides(const char *what, const char *rendered, const SecretCase *c)
{
    for (const char *const *h = c->hidden; *h; h++)
        if (strstr(rendered, *h))
            fail_msg("\"%s\": %s \"%s\" holds \"%s\"", c->text, what, rendered, *h);
}

static void assert_same_or_null(const char *got, const char *want)
{
    if (want)
        assert_string_equal(got, want);
    else
        assert_null(got);
}

static void test_password_never_rendered_but_kept(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(secret_cases); i++) {
        const SecretCase *c = &secret_cases[i];
        ConnInfo *ci = must_parse(c->text);
        char *child = conninfo_for_child(ci, NULL);
        char *child2 = conninfo_for_child(ci, child_extra);
        ConnInfo *back;

        assert_hides("display", conninfo_display(ci), c);
        assert_hides("child conninfo", child, c);
        assert_hides("child conninfo with extras", child2, c);
        assert_non_null(strstr(conninfo_display(ci), "user="));
        assert_same_or_null(conninfo_password(ci), c->password);
        assert_same_or_null(conninfo_get(ci, "sslpassword"), c->sslpassword);

        back = must_parse(child2);
        assert_null(conninfo_password(back));
        assert_null(conninfo_get(back, "sslpassword"));
        assert_string_equal(conninfo_get(back, "user"), c->user);
        assert_string_equal(conninfo_get(back, "fallback_application_name"), "pgrelocate");
        conninfo_destroy(back);
        free(child);
        free(child2);
        conninfo_destroy(ci);
    }
}

static void test_params_carry_the_password_for_connecting(void **state)
{
    ConnInfo *ci = must_parse("postgresql://u:s3cr3t@h/db");
    const char **kw, **val;
    int found = 0;

    (void)state;
    conninfo_params(ci, NULL, &kw, &val);
    for (int i = 0; kw[i]; i++)
        if (strcmp(kw[i], "password") == 0) {
            assert_string_equal(val[i], "s3cr3t");
            found++;
        }
    assert_int_equal(found, 1);
    free(kw);
    free(val);
    conninfo_destroy(ci);
}

typedef struct DisplayCase {
    const char *text;
    const char *want;
} DisplayCase;

static const DisplayCase display_cases[] = {
    {"postgresql://alice@db1:5432/app", "host=db1 port=5432 dbname=app user=alice"},
    {"dbname=app user=alice host=db1 sslmode=require application_name=x connect_timeout=5",
     "host=db1 dbname=app user=alice sslmode=require"},
    {"postgresql:///app?host=/tmp", "host=/tmp dbname=app"},
    {"postgresql://[::1]:5433/app", "host=::1 port=5433 dbname=app"},
    {"postgresql://h1:5432,h2:5433/app", "host=h1,h2 port=5432,5433 dbname=app"},
    {"hostaddr=10.0.0.1 port=6432", "hostaddr=10.0.0.1 port=6432"},
    {"", "(libpq defaults)"},
    {"postgresql://", "(libpq defaults)"},
    {"application_name=only", "(libpq defaults)"},
};

static void test_display_shows_where_and_who_in_fixed_order(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(display_cases); i++) {
        ConnInfo *ci = must_parse(display_cases[i].text);

        if (strcmp(conninfo_display(ci), display_cases[i].want) != 0)
            fail_msg("\"%s\": display \"%s\", want \"%s\"", display_cases[i].text,
                     conninfo_display(ci), display_cases[i].want);
        conninfo_destroy(ci);
    }
}

static void test_get_returns_only_what_was_set(void **state)
{
    ConnInfo *ci = must_parse("host=h port=5432");
    ConnInfo *none = conninfo_parse(NULL, (char[8]){0}, 8);

    (void)state;
    assert_string_equal(conninfo_get(ci, "host"), "h");
    assert_string_equal(conninfo_get(ci, "port"), "5432");
    assert_null(conninfo_get(ci, "dbname"));
    assert_null(conninfo_get(ci, "password"));
    assert_null(conninfo_password(ci));
    assert_non_null(none);
    assert_string_equal(conninfo_display(none), "(libpq defaults)");
    assert_null(conninfo_get(none, "host"));
    conninfo_destroy(ci);
    conninfo_destroy(none);
    conninfo_destroy(NULL);
}

typedef struct BadCase {
    const char *text;
    const char *expect;    /* a word of libpq's message that must survive */
    const char *hidden[4]; /* fragments of the secret that must not */
} BadCase;

static const BadCase bad_cases[] = {
    {"host=x password", "missing", {NULL}},
    {"host=x password=pa55 w0rd", "missing", {"pa55", "w0rd"}},
    {"password='s3cr3t", "unterminated", {"s3cr3t"}},
    {"postgresql://u:s3cr3t@[bad", "IPv6", {"s3cr3t", "[bad"}},
    {"postgresql://u:s3cr3t@[]/db", "IPv6", {"s3cr3t"}},
    {"postgresql://u:s3cr3t@[::1]x/db", "unexpected character", {"s3cr3t"}},
    {"postgresql://u:s3cr3t@h/db?sslmode", "separator", {"s3cr3t"}},
    {"postgresql://u:s3cr3t@h/db?a=b=c", "separator", {"s3cr3t"}},
    {"postgresql://u:s3cr3t@h/db?bogus=1", "invalid URI query parameter", {"s3cr3t"}},
    {"postgresql://u:s3cr%zzt@h/db", "percent-encoded", {"s3cr", "zzt"}},
    {"postgresql://u:s3cr%00t@h/db", "percent-encoded", {"s3cr", "%00t"}},
    {"bogus=s3cr3t", "invalid connection option", {"s3cr3t"}},
    /* double quotes in the input must not let a fragment out */
    {"postgresql://u:Xq7\"Zk9@[bad", "end of string", {"Xq7", "Zk9"}},
    {"postgresql://u:Xq7Zk9@[::1]\"x/db", "unexpected character", {"Xq7Zk9"}},
    {"postgresql://u:Xq7\"Zk9\"Wm4@[::1]x/db", "unexpected character", {"Xq7", "Zk9", "Wm4"}},
    {"host=x password=pa55 w\"0rdZk9", "missing", {"pa55", "0rd", "Zk9"}},
    {"host=x password=\"Xq7 Zk9\"", "missing", {"Xq7", "Zk9"}},
};

static void test_malformed_fails_without_quoting_the_secret(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(bad_cases); i++) {
        const BadCase *c = &bad_cases[i];
        char err[512];
        ConnInfo *ci;

        memset(err, 'Z', sizeof(err));
        ci = conninfo_parse(c->text, err, sizeof(err));
        if (ci)
            fail_msg("\"%s\" parsed", c->text);
        if (!memchr(err, '\0', sizeof(err)) || !strstr(err, c->expect))
            fail_msg("\"%s\": error \"%.*s\" lacks \"%s\"", c->text, (int)sizeof(err), err,
                     c->expect);
        for (const char *const *h = c->hidden; *h; h++)
            if (strstr(err, *h))
                fail_msg("\"%s\": error \"%s\" holds \"%s\"", c->text, err, *h);
    }
}

static void test_error_text_is_cut_to_the_buffer(void **state)
{
    (void)state;
    for (size_t len = 1; len < 40; len++) {
        char *err = malloc(len);

        assert_non_null(err);
        assert_null(conninfo_parse("postgresql://u:s3cr3t@[bad", err, len));
        assert_true(strlen(err) < len);
        assert_null(strstr(err, "s3cr3t"));
        free(err);
    }
}

static const char *param_value(const char **kw, const char **val, const char *key, int *count)
{
    const char *v = NULL;

    *count = 0;
    for (int i = 0; kw[i]; i++)
        if (strcmp(kw[i], key) == 0) {
            v = val[i];
            ++*count;
        }
    return v;
}

static void test_params_extras_override_user_keywords(void **state)
{
    static const char *const extra[] = {"application_name", "pgrelocate",      "dbname", "other",
                                        "options",          "-c search_path=", NULL};
    ConnInfo *ci = must_parse("host=h user=u dbname=db application_name=mine port=5433");
    const char **kw, **val;
    int n = 0, count;

    (void)state;
    conninfo_params(ci, extra, &kw, &val);
    while (kw[n])
        n++;
    assert_null(val[n]);
    assert_int_equal(n, 6);
    assert_string_equal(param_value(kw, val, "application_name", &count), "pgrelocate");
    assert_int_equal(count, 1);
    assert_string_equal(param_value(kw, val, "dbname", &count), "other");
    assert_int_equal(count, 1);
    assert_string_equal(param_value(kw, val, "options", &count), "-c search_path=");
    assert_string_equal(param_value(kw, val, "host", &count), "h");
    assert_string_equal(param_value(kw, val, "user", &count), "u");
    assert_string_equal(param_value(kw, val, "port", &count), "5433");
    free(kw);
    free(val);

    conninfo_params(ci, NULL, &kw, &val);
    assert_string_equal(param_value(kw, val, "application_name", &count), "mine");
    assert_string_equal(param_value(kw, val, "dbname", &count), "db");
    free(kw);
    free(val);
    conninfo_destroy(ci);
}

static const char *const roundtrip_inputs[] = {
    "postgresql://us%20er@h/d%27b%5Cx?application_name=a%20b%27c%5C%5Cd",
    "host=h dbname='my \\'db\\' \\\\ x' user='a b'",
    "host=/var/run/postgresql dbname=\"quoted\" options='-c search_path=a,b'",
    "postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write&sslmode=verify-full",
    "dbname=' leading and trailing ' user=\\\\",
    "dbname='=' user='\\'' host='\\\\'",
};

static void test_child_conninfo_reads_back_to_the_same_settings(void **state)
{
    static const char *const keys[] = {"host",    "port",
                                       "dbname",  "user",
                                       "options", "application_name",
                                       "sslmode", "target_session_attrs"};

    (void)state;
    for (size_t i = 0; i < NELEM(roundtrip_inputs); i++) {
        ConnInfo *ci = must_parse(roundtrip_inputs[i]);
        char *child = conninfo_for_child(ci, NULL);
        ConnInfo *back = must_parse(child);

        for (size_t k = 0; k < NELEM(keys); k++) {
            const char *a = conninfo_get(ci, keys[k]), *b = conninfo_get(back, keys[k]);

            if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
                fail_msg("\"%s\" -> \"%s\": %s was \"%s\", reads back \"%s\"", roundtrip_inputs[i],
                         child, keys[k], a ? a : "(unset)", b ? b : "(unset)");
        }
        assert_null(conninfo_password(back));
        free(child);
        conninfo_destroy(back);
        conninfo_destroy(ci);
    }
}

static void test_child_conninfo_exact_quoting(void **state)
{
    static const char *const extra[] = {"dbname", "new db", "application_name", "o'k\\", NULL};
    ConnInfo *ci = must_parse("dbname='it\\'s a \\\\ test' password=s3cr3t");
    char *plain = conninfo_for_child(ci, NULL);
    char *over = conninfo_for_child(ci, extra);
    ConnInfo *empty = must_parse("");
    char *none = conninfo_for_child(empty, NULL);
    char *only_extra = conninfo_for_child(empty, child_extra);

    (void)state;
    assert_string_equal(plain, "dbname='it\\'s a \\\\ test'");
    assert_string_equal(over, "dbname='new db' application_name='o\\'k\\\\'");
    assert_string_equal(none, "");
    assert_string_equal(only_extra, "fallback_application_name='pgrelocate'");
    free(plain);
    free(over);
    free(none);
    free(only_extra);
    conninfo_destroy(empty);
    conninfo_destroy(ci);
}

/* Every default the user did not set, in order; the user's own value (or
 * PGCONNECT_TIMEOUT for connect_timeout) wins. */
static void test_timeouts_added_only_where_the_user_set_none(void **state)
{
    static const struct {
        const char *text;
        const char *env;
        const char *want; /* "k=v k=v" */
    } cases[] = {
        {"host=h", NULL,
         "connect_timeout=10 keepalives=1 keepalives_idle=10 keepalives_interval=5 "
         "keepalives_count=3 tcp_user_timeout=30000"},
        {"postgresql://h/db?connect_timeout=3&tcp_user_timeout=0", NULL,
         "keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3"},
        {"host=h keepalives=0 keepalives_idle=60 keepalives_interval=1 keepalives_count=9", "4",
         "tcp_user_timeout=30000"},
        {"host=h", "", /* empty: libpq ignores it, so do we */
         "connect_timeout=10 keepalives=1 keepalives_idle=10 keepalives_interval=5 "
         "keepalives_count=3 tcp_user_timeout=30000"},
    };
    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        ConnInfo *ci = must_parse(cases[i].text);
        const char *out[CONNINFO_TIMEOUTS_MAX];
        char got[512] = "";
        int n;

        if (cases[i].env)
            setenv("PGCONNECT_TIMEOUT", cases[i].env, 1);
        else
            unsetenv("PGCONNECT_TIMEOUT");
        n = conninfo_timeouts(ci, out);
        assert_null(out[n]);
        for (int k = 0; k < n; k += 2)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s=%s", k ? " " : "", out[k],
                     out[k + 1]);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("\"%s\": got \"%s\", want \"%s\"", cases[i].text, got, cases[i].want);
        conninfo_destroy(ci);
    }
    unsetenv("PGCONNECT_TIMEOUT");
}

static void test_connect_timeout_in_force(void **state)
{
    static const struct {
        const char *text;
        const char *env;
        int want;
    } cases[] = {
        {"host=h", NULL, 10},
        {"host=h connect_timeout=3", "7", 3},
        {"host=h", "7", 7},
        {"host=h connect_timeout=1", NULL, 2},
        {"host=h connect_timeout=0", NULL, 0},
    };
    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        ConnInfo *ci = must_parse(cases[i].text);

        if (cases[i].env)
            setenv("PGCONNECT_TIMEOUT", cases[i].env, 1);
        else
            unsetenv("PGCONNECT_TIMEOUT");
        assert_int_equal(conninfo_connect_timeout_s(ci), cases[i].want);
        conninfo_destroy(ci);
    }
    unsetenv("PGCONNECT_TIMEOUT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeouts_added_only_where_the_user_set_none),
        cmocka_unit_test(test_connect_timeout_in_force),
        cmocka_unit_test(test_password_never_rendered_but_kept),
        cmocka_unit_test(test_params_carry_the_password_for_connecting),
        cmocka_unit_test(test_display_shows_where_and_who_in_fixed_order),
        cmocka_unit_test(test_get_returns_only_what_was_set),
        cmocka_unit_test(test_malformed_fails_without_quoting_the_secret),
        cmocka_unit_test(test_error_text_is_cut_to_the_buffer),
        cmocka_unit_test(test_params_extras_override_user_keywords),
        cmocka_unit_test(test_child_conninfo_reads_back_to_the_same_settings),
        cmocka_unit_test(test_child_conninfo_exact_quoting),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

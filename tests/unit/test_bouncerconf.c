/*
 * test_bouncerconf.c: rewriting one [databases] entry of a pgbouncer.ini
 * keeps every other byte; quoting of names and values; missing and
 * duplicate entries; the atomic file replacement.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bouncerconf.h"

static const char *const to_target[] = {"host", "10.0.0.2", "port", "6000", "dbname", "shop", NULL};

typedef struct Case {
    const char *name;
    const char *db;
    const char *in;
    const char *want; /* NULL: must fail */
    const char *old;
} Case;

static const Case cases[] = {
    {"plain entry, others untouched", "app",
     "; comment = x\n[pgbouncer]\nlisten_port = 6432\n\n[databases]\n"
     "other = host=a port=1\napp = host=127.0.0.1 port=5432 dbname=app user=web\n"
     "last = host=z\n",
     "; comment = x\n[pgbouncer]\nlisten_port = 6432\n\n[databases]\n"
     "other = host=a port=1\napp = host=10.0.0.2 port=6000 dbname=shop user=web\n"
     "last = host=z\n",
     "host=127.0.0.1 port=5432 dbname=app user=web"},
    {"CRLF and trailing blanks kept, missing keys appended", "app",
     "[databases]\r\napp=host=h   \r\n",
     "[databases]\r\napp=host=10.0.0.2 port=6000 dbname=shop   \r\n", "host=h"},
    {"quoted name with a quote, quoted value", "my \"db\"",
     "[databases]\n\"my \"\"db\"\"\" = host=h application_name='a b''c' port=1\n",
     "[databases]\n\"my \"\"db\"\"\" = host=10.0.0.2 application_name='a b''c' port=6000 "
     "dbname=shop\n",
     "host=h application_name='a b''c' port=1"},
    {"same name in another section is not the entry", "app",
     "[users]\napp = pool_mode=session\n[databases]\napp = host=h\n",
     "[users]\napp = pool_mode=session\n[databases]\napp = host=10.0.0.2 port=6000 dbname=shop\n",
     "host=h"},
    {"commented entry ignored, no newline at the end", "app",
     "[databases]\n;app = host=x\napp = host=h",
     "[databases]\n;app = host=x\napp = host=10.0.0.2 port=6000 dbname=shop", "host=h"},
    {"missing entry", "app", "[databases]\napplication = host=h\n", NULL, NULL},
    {"entry outside [databases]", "app", "[pgbouncer]\napp = host=h\n", NULL, NULL},
    {"duplicate entry", "app", "[databases]\napp = host=h\napp = host=i\n", NULL, NULL},
    {"unterminated quote", "app", "[databases]\napp = host='h\n", NULL, NULL},
    {"prefix of a name is not the name", "app", "[databases]\napp2 = host=h\n", NULL, NULL},
};

static void test_rewrite(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const Case *c = &cases[i];
        StrBuf out;
        char *old = NULL;
        char err[256] = "";
        bool ok;

        strbuf_init(&out);
        ok = bouncerconf_rewrite(c->in, strlen(c->in), c->db, to_target, &out, &old, err,
                                 sizeof(err));
        if (c->want) {
            if (!ok)
                fail_msg("%s: failed: %s", c->name, err);
            assert_string_equal(out.data, c->want);
            assert_string_equal(old, c->old);
        } else {
            if (ok)
                fail_msg("%s: succeeded", c->name);
            assert_true(strstr(err, "database") != NULL || strstr(err, "parse") != NULL);
        }
        free(old);
        strbuf_free(&out);
    }
}

static void test_get(void **state)
{
    const char *in = "[databases]\napp = host=h port = 5433 password='se cret'\n";
    char *v = NULL;
    char err[256];

    (void)state;
    assert_true(bouncerconf_get(in, strlen(in), "app", "port", &v, err, sizeof(err)));
    assert_string_equal(v, "5433");
    free(v);
    assert_true(bouncerconf_get(in, strlen(in), "app", "password", &v, err, sizeof(err)));
    assert_string_equal(v, "se cret");
    free(v);
    assert_true(bouncerconf_get(in, strlen(in), "app", "dbname", &v, err, sizeof(err)));
    assert_null(v);
    assert_false(bouncerconf_get(in, strlen(in), "nope", "host", &v, err, sizeof(err)));
}

static void test_write_file(void **state)
{
    char dir[] = "/tmp/test_bouncerconf.XXXXXX";
    char path[256], err[256];
    StrBuf sb;
    struct stat st;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pgbouncer.ini", dir);
    {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs("old\n", f);
        fclose(f);
    }
    chmod(path, 0640);
    assert_true(bouncerconf_write_file(path, "new\n", 4, err, sizeof(err)));
    strbuf_init(&sb);
    assert_true(bouncerconf_read_file(path, &sb, err, sizeof(err)));
    assert_string_equal(sb.data, "new\n");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    strbuf_free(&sb);
    assert_false(bouncerconf_write_file("/nonexistent/dir/x.ini", "x", 1, err, sizeof(err)));
    unlink(path);
    rmdir(dir); /* fails if a temporary file was left behind */
    assert_int_equal(access(dir, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rewrite), cmocka_unit_test(test_get),
                                       cmocka_unit_test(test_write_file)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}

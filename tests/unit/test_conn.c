/*
 * test_conn.c: how a failed connection is judged without reading its
 * message (libpq's and the server's text may be translated): by the stage
 * the attempt reached and libpq's password flags; the hint each judgement
 * gives; libpq messages put on one line.  Two real attempts need no
 * server: a closed TCP port and a Unix socket directory nobody listens in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct StageCase {
    ConnStatusType status;
    ConnStage want;
} StageCase;

static const StageCase stage_cases[] = {
    {CONNECTION_NEEDED, CONN_STAGE_RESOLVING},
    {CONNECTION_STARTED, CONN_STAGE_RESOLVING},
    {CONNECTION_MADE, CONN_STAGE_NEGOTIATING},
    {CONNECTION_SSL_STARTUP, CONN_STAGE_NEGOTIATING},
    {CONNECTION_GSS_STARTUP, CONN_STAGE_NEGOTIATING},
    {CONNECTION_AWAITING_RESPONSE, CONN_STAGE_AUTHENTICATING},
    {CONNECTION_AUTH_OK, CONN_STAGE_AUTHENTICATED},
    {CONNECTION_CHECK_WRITABLE, CONN_STAGE_CHECKING},
    {CONNECTION_CHECK_TARGET, CONN_STAGE_CHECKING},
    {CONNECTION_CHECK_STANDBY, CONN_STAGE_CHECKING},
    {CONNECTION_CONSUME, CONN_STAGE_CHECKING},
    {CONNECTION_SETENV, CONN_STAGE_CHECKING},
};

static void test_each_libpq_status_maps_to_its_stage(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(stage_cases); i++)
        assert_int_equal(conn_stage_of(stage_cases[i].status), stage_cases[i].want);
}

typedef struct FailureCase {
    const char *what; /* the server's (or libpq's) error it stands for */
    ConnStage stage;
    bool timed_out, needs_password, used_password;
    const char *sqlstate; /* seen after authentication (by an event procedure) */
    ConnFailure want;
} FailureCase;

static const FailureCase failure_cases[] = {
    {"Connection refused", CONN_STAGE_RESOLVING, false, false, false, NULL,
     CONN_FAILURE_UNREACHABLE},
    {"could not translate host name", CONN_STAGE_RESOLVING, false, false, false, NULL,
     CONN_FAILURE_UNREACHABLE},
    {"timeout expired while connecting", CONN_STAGE_RESOLVING, true, false, false, NULL,
     CONN_FAILURE_UNREACHABLE},
    {"timeout expired waiting for the server", CONN_STAGE_AUTHENTICATING, true, false, false, NULL,
     CONN_FAILURE_UNREACHABLE},
    {"fe_sendauth: no password supplied", CONN_STAGE_AUTHENTICATING, false, true, true, NULL,
     CONN_FAILURE_PASSWORD},
    {"28P01 password authentication failed", CONN_STAGE_AUTHENTICATING, false, false, true, NULL,
     CONN_FAILURE_LOGIN},
    {"3D000 after a good password, in the same read", CONN_STAGE_AUTHENTICATING, false, false, true,
     NULL, CONN_FAILURE_LOGIN},
    {"3D000 after a good password, seen", CONN_STAGE_AUTHENTICATED, false, false, true, "3D000",
     CONN_FAILURE_NAMES},
    {"28000 pg_hba.conf rejects connection", CONN_STAGE_AUTHENTICATING, false, false, false, "",
     CONN_FAILURE_REFUSED},
    {"not yet diagnosed (no SQLSTATE seen)", CONN_STAGE_AUTHENTICATING, false, false, false, NULL,
     CONN_FAILURE_REFUSED},
    {"3D000 database does not exist (trust)", CONN_STAGE_AUTHENTICATING, false, false, false,
     "3D000", CONN_FAILURE_NAMES},
    {"28000 role does not exist (trust)", CONN_STAGE_AUTHENTICATED, false, false, false, "28000",
     CONN_FAILURE_NAMES},
    {"53300 too many connections for role", CONN_STAGE_AUTHENTICATED, false, false, false, "53300",
     CONN_FAILURE_OTHER},
    {"SSL required but not offered", CONN_STAGE_NEGOTIATING, false, false, false, NULL,
     CONN_FAILURE_OTHER},
    {"read-only server for target_session_attrs=read-write", CONN_STAGE_CHECKING, false, false,
     false, NULL, CONN_FAILURE_OTHER},
};

static void test_failures_are_judged_by_stage_and_password_flags(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(failure_cases); i++) {
        const FailureCase *c = &failure_cases[i];
        ConnFailure got = conn_classify_failure(c->stage, c->timed_out, c->needs_password,
                                                c->used_password, c->sqlstate);

        if (got != c->want)
            fail_msg("%s: got %d, expected %d", c->what, got, c->want);
    }
}

static void test_each_failure_has_its_hint(void **state)
{
    (void)state;
    assert_null(conn_failure_hint(CONN_FAILURE_NONE));
    assert_null(conn_failure_hint(CONN_FAILURE_OTHER));
    assert_non_null(strstr(conn_failure_hint(CONN_FAILURE_UNREACHABLE), "server is running"));
    assert_non_null(strstr(conn_failure_hint(CONN_FAILURE_PASSWORD), "~/.pgpass"));
    assert_non_null(strstr(conn_failure_hint(CONN_FAILURE_REFUSED), "pg_hba.conf"));
    assert_non_null(strstr(conn_failure_hint(CONN_FAILURE_NAMES), "database and user names"));
    assert_non_null(strstr(conn_failure_hint(CONN_FAILURE_LOGIN), "password"));
    assert_non_null(strstr(conn_failure_hint(CONN_FAILURE_LOGIN), "database name"));
}

/* A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void connect_expect(const char *host, const char *port, ConnFailure want)
{
    const char *kw[] = {"host", "port", "dbname", "connect_timeout", NULL};
    const char *val[] = {host, port, "app", "5", NULL};
    ConnFailure failure;
    bool timed_out;
    PGconn *conn = conn_connect(kw, val, 0, &failure, &timed_out);

    assert_non_null(conn);
    assert_int_not_equal(PQstatus(conn), CONNECTION_OK);
    assert_false(timed_out);
    assert_int_equal(failure, want);
    PQfinish(conn);
}

static void test_a_closed_port_is_unreachable(void **state)
{
    char port[16];

    (void)state;
    snprintf(port, sizeof(port), "%d", closed_port());
    connect_expect("127.0.0.1", port, CONN_FAILURE_UNREACHABLE);
}

static void test_a_socket_directory_without_a_server_is_unreachable(void **state)
{
    char dir[] = "/tmp/test_conn.XXXXXX";

    (void)state;
    assert_non_null(mkdtemp(dir));
    connect_expect(dir, "5432", CONN_FAILURE_UNREACHABLE);
    rmdir(dir);
}

static void test_messages_are_put_on_one_line(void **state)
{
    static const char *const cases[][2] = {
        {"connection to server failed: Connection refused\n\tIs the server running?\n",
         "connection to server failed: Connection refused Is the server running?"},
        {"FATAL:  database \"x\" does not exist\n", "FATAL: database \"x\" does not exist"},
        {"", ""},
        {NULL, ""},
    };

    (void)state;
    for (size_t i = 0; i < NELEM(cases); i++) {
        char *got = conn_one_line(cases[i][0]);

        assert_string_equal(got, cases[i][1]);
        free(got);
    }
}

/* A stopped server's query is given up a quarter after its statement_timeout,
 * at least 5 s after. */
static void test_query_wait_is_a_margin_above_statement_timeout(void **state)
{
    (void)state;
    assert_int_equal(conn_query_wait_ms(60000), 75000);
    assert_int_equal(conn_query_wait_ms(3000), 8000);
    assert_int_equal(conn_query_wait_ms(20000), 25000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_libpq_status_maps_to_its_stage),
        cmocka_unit_test(test_failures_are_judged_by_stage_and_password_flags),
        cmocka_unit_test(test_each_failure_has_its_hint),
        cmocka_unit_test(test_a_closed_port_is_unreachable),
        cmocka_unit_test(test_a_socket_directory_without_a_server_is_unreachable),
        cmocka_unit_test(test_messages_are_put_on_one_line),
        cmocka_unit_test(test_query_wait_is_a_margin_above_statement_timeout),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

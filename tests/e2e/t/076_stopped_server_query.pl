# A server stopped (SIGSTOP: its kernel still acknowledges TCP, so neither
# keepalives nor tcp_user_timeout end the wait) while a catalog or state
# query of a short command is in flight (issue 15, src/WAITS.md): the
# command's client-side deadline (statement_timeout plus a quarter, at least
# 5 s; statement_timeout shortened to 3 s here by
# PGRELOCATE_TEST_STATEMENT_MS) ends it with a message naming the side, the
# host and the wait, instead of holding it until the server goes on.
#
# A. status's query on the target waits on a lock held by another session,
#    the target is frozen, and status fails after about 8 s (+ at most 2 s
#    for the cancel request a stopped postmaster never answers).
# B. copy's pg_dump of the schema waits on a lock on the source, the source
#    is frozen: pg_dump is killed after its limit (30 min, 5 s here by
#    PGRELOCATE_TEST_DUMP_LIMIT_MS) and copy fails saying so.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FaultTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.t (id int PRIMARY KEY, v text);
INSERT INTO public.t SELECT i, md5(i::text) FROM generate_series(1, 100) i;
});
RelocateTest::copy_ok('copy', source => $src->connstr($db), target => $tgt->connstr($db));

# every state table locked by a session that stays in its transaction
my ($holder, $herr) = FaultTest::hold($tgt, $db, q{
BEGIN;
SELECT format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', string_agg(c.oid::regclass::text, ', '))
FROM pg_class c WHERE c.relnamespace = 'pgrelocate'::regnamespace AND c.relkind = 'r' \gexec
SELECT pg_sleep(600);
});
ok(RelocateTest::wait_until($tgt, $db,
	q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	  WHERE l.mode = 'AccessExclusiveLock' AND a.query LIKE '%pg_sleep%'}, 't', 30),
	'a session holds the state tables') or diag($$herr);

my $t0 = time;
my $run = RelocateTest::start_copy(
	command => 'status',
	target  => $tgt->connstr($db),
	env     => { PGRELOCATE_TEST_STATEMENT_MS => '3000' },
	timeout => 60);
ok(RelocateTest::wait_until($tgt, $db,
	q{SELECT count(*) > 0 FROM pg_stat_activity
	  WHERE application_name = 'pgrelocate status' AND wait_event_type = 'Lock'}, 't', 30),
	'status waits on the lock');
FaultTest::freeze($tgt);
my $r = RelocateTest::finish_copy($run);
my $took = time - $t0;
FaultTest::thaw($tgt);
FaultTest::release($tgt, $db, $holder);

ok(!$r->{ok} && $r->{exit} > 0 && $r->{signal} == 0, 'status fails (no signal, no harness timeout)')
  or diag($r->{stderr});
like($r->{stderr},
	qr/\[[^\]]+\] timed out after 8 s waiting for the target to answer a query \(host=\S+ port=\d+\)/,
	'the message names the side, the host and the wait');
like($r->{stderr}, qr/HINT:\s+The server's statement_timeout \(3 s\).*stopped/s, 'the hint says why');
ok($took >= 7 && $took < 20, "status ends after its deadline (took ${\ sprintf('%.1f', $took)} s)");

# the server goes on: nothing is left waiting, and status works again
ok(RelocateTest::wait_until($tgt, $db,
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate status'}, 't', 30),
	'the cancelled query and its session are gone once the target goes on');
my $again = RelocateTest::run_copy(command => 'status', target => $tgt->connstr($db));
ok($again->{ok}, 'status works again') or diag($again->{stderr});

# B: pg_dump on a frozen source
$tgt->safe_psql('postgres', 'CREATE DATABASE app2');
($holder, $herr) = FaultTest::hold($src, $db, q{
BEGIN;
LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE;
SELECT pg_sleep(600);
});
$t0 = time;
$run = RelocateTest::start_copy(
	source  => $src->connstr($db),
	target  => $tgt->connstr('app2'),
	env     => { PGRELOCATE_TEST_DUMP_LIMIT_MS => '5000' },
	timeout => 60);
ok(RelocateTest::wait_until($src, $db,
	q{SELECT count(*) > 0 FROM pg_stat_activity
	  WHERE application_name IN ('pgrelocate pg_dump', 'pg_dump') AND wait_event_type = 'Lock'}, 't', 30),
	'pg_dump waits on the lock') or diag($$herr);
FaultTest::freeze($src);
# pg_dump's limit ends its wait; what copy does next on the source (its own
# sessions, which COPY and ANALYZE and have no statement_timeout) still
# waits for the source: thaw it once the message is out
my $said = '';
while (time - $t0 < 40)
{
	$said = ${ $run->{stderr} };
	last if $said =~ /pg_dump of the source schema was still running/;
	eval { $run->{h}->pump_nb; };
	select undef, undef, undef, 0.1;
}
$took = time - $t0;
FaultTest::thaw($src);
like($said,
	qr/\[schema\] pg_dump of the source schema was still running after 5 s: killed \(.*port=\d+/,
	'the message says pg_dump was killed, and where it waited');
ok($took < 20, "pg_dump is killed while the source is stopped (after ${\ sprintf('%.1f', $took)} s)");
$r = RelocateTest::finish_copy($run);
FaultTest::release($src, $db, $holder);
ok(!$r->{ok} && $r->{exit} > 0 && $r->{signal} == 0, 'copy fails (no signal, no harness timeout)')
  or diag($r->{stderr});

done_testing();

# cleanup under faults (issue 15, src/WAITS.md): the source is stopped
# (SIGSTOP) while cleanup waits on it, restoring a table's replica identity
# (an ALTER TABLE that waits on a lock another session holds).  Its session
# has a statement_timeout, so the client-side bound (statement_timeout plus
# a quarter, at least 5 s: 8 s with PGRELOCATE_TEST_STATEMENT_MS=3000) ends
# the wait with a message naming the source's host and port (before, this
# DDL went through PQexec and waited for as long as the source was
# stopped).  After SIGCONT, cleanup runs again, completes, and leaves no
# slot, publication, origin, event trigger or state behind, and the table's
# replica identity is as before.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FaultTest;
use FollowTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.t (id int PRIMARY KEY, v text);
INSERT INTO public.t SELECT i, md5(i::text) FROM generate_series(1, 1000) i;
CREATE TABLE public.nokey (v text);
INSERT INTO public.nokey SELECT md5(i::text) FROM generate_series(1, 100) i;
});
my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
END { FollowTest::stop_run($run) if $run && !$run->{result}; }
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
is(RelocateTest::query($src, $db, q{SELECT relreplident FROM pg_class WHERE oid = 'public.nokey'::regclass}),
	'f', 'start set the replica identity of the table without a key to FULL');
my $s = FollowTest::stop_run($run);
is($s->{exit}, 0, 'start stops on SIGINT') or diag($s->{stderr});

# a session on the source keeps the table: cleanup's ALTER TABLE waits
my ($holder, $herr) = FaultTest::hold($src, $db,
	"BEGIN;\nLOCK TABLE public.nokey IN ACCESS SHARE MODE;\nSELECT pg_sleep(600);\n");
ok(RelocateTest::wait_until($src, $db,
	q{SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND state = 'active'}, 't', 30),
	'a session holds public.nokey on the source') or diag($$herr);

my $c = RelocateTest::start_copy(FollowTest::conn($src, $tgt, $db),
	command => 'cleanup',
	env     => { PGRELOCATE_TEST_STATEMENT_MS => '3000' },
	timeout => 60);
ok(RelocateTest::wait_until($src, $db,
	q{SELECT count(*) > 0 FROM pg_stat_activity
	  WHERE application_name = 'pgrelocate cleanup' AND wait_event_type = 'Lock'}, 't', 30),
	'cleanup waits on the lock on the source');
FaultTest::freeze($src);
my $t0 = time;
my $r = RelocateTest::finish_copy($c);
my $took = time - $t0;
FaultTest::thaw($src);
ok(!$r->{ok} && $r->{exit} > 0 && $r->{signal} == 0, 'cleanup fails (no signal, no harness timeout)')
  or diag($r->{stderr});
like($r->{stderr},
	qr/\[replica identity\] timed out after 8 s waiting for the source to answer a query \(host=\S+ port=${\ $src->port}\)/,
	'the message names the wait, the source, its host and port');
like($r->{stderr}, qr/cleanup did not finish.*\n.*HINT:\s+Fix the cause and run cleanup again/,
	'and says to run cleanup again');
cmp_ok($took, '<', 15, sprintf('cleanup ends within its bound while the source is stopped (%.1f s)', $took));

FaultTest::release($src, $db, $holder);
FollowTest::cleanup_ok('cleanup after SIGCONT', $src, $tgt, $db);
is(join(', ', FollowTest::leftovers($src, $tgt, $db)), '', 'nothing left behind');
is(RelocateTest::query($src, $db, q{SELECT relreplident FROM pg_class WHERE oid = 'public.nokey'::regclass}),
	'd', 'the replica identity is restored');
ok(FollowTest::wait_for_no_tool_sessions($src, 30), 'no session of pgrelocate is left on the source');
done_testing();

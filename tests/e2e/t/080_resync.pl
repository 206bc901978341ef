# pgrelocate resync: copy chosen tables again while the others follow.
#
# A. start follows under a pgbench load; on the target, public.docs loses,
#    gains and changes rows, and pgbench_accounts gains rows and has rows
#    changed (columns the load never writes).  verify names resync as the
#    fix; a resync killed -9 inside a chunk's transaction leaves them
#    waiting; resync --tables of both returns 0 while the load goes on; after
#    the load: every table equal row by row, the counter exactly once,
#    verify MATCH.
# B. start stopped by an apply conflict (a pgbench_tellers row deleted on
#    the target: the load's UPDATE finds no row), the error's HINT names
#    resync; with no start running, resync of pgbench_tellers follows in
#    its own process (past the conflicting transaction: its tellers change
#    is in the new copy), returns 0; start again follows; equal, exactly
#    once, verify MATCH.
# C. refusals: no table matches (exit 2).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP ();
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
my $scale = 2;
FollowTest::setup_pgbench($src, $db, scale => $scale);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.docs (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO public.docs SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 50000) g;
SQL
my @args = ('--replica-identity-full', '--jobs', 2);
my %conn = FollowTest::conn($src, $tgt, $db);

sub resync
{
	my (@a) = @_;
	return RelocateTest::run_copy(%conn, command => 'resync', args => [ '--jobs', 2, @a ]);
}

sub verify
{
	my $r = RelocateTest::run_copy(%conn, command => 'verify', args => [ '--jobs', 2 ]);
	return $r;
}

my $load = FollowTest::load_start($src, $db, scale => $scale, seconds => 3);
my $run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'A: start follows') or diag(${ $run->{stderr} });

# A. damage on the target, then resync under the load
$tgt->safe_psql($db, <<'SQL');
DELETE FROM public.docs WHERE id % 1000 = 7;
INSERT INTO public.docs VALUES (900001, 'extra'), (900002, 'extra');
UPDATE public.docs SET body = 'changed' WHERE id % 1000 = 9;
INSERT INTO public.pgbench_accounts VALUES (9000001, 1, 0, 'extra');
UPDATE public.pgbench_accounts SET filler = 'changed' WHERE aid % 5000 = 3;
SQL
my $v = verify();
is($v->{exit}, 3, 'A: verify finds the damage (exit 3)');
like($v->{stdout}, qr/to fix public\.docs: pgrelocate resync --tables public\.docs/,
	'A: verify names resync as the fix');
# a resync killed -9 between a chunk's ready mark and its commit: its
# tables' changes wait; the next resync completes it
my $killed = RelocateTest::start_copy(%conn, command => 'resync',
	args => [ '--jobs', 2, '--tables', 'public.docs,public.pgbench_accounts' ],
	env => { PGRELOCATE_TEST_PAUSE_AT => 'chunk-marked:3000' });
ok(FollowTest::poll($tgt, $db,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate copy' "
		  . "AND state = 'idle in transaction'", 60),
	'A: a resync chunk waits between its ready mark and its commit');
kill 'KILL', $killed->{pid};
is(RelocateTest::finish_copy($killed)->{signal}, 9, 'A: that resync killed -9');
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pgrelocate.tables WHERE sync_state = 'syncing'"),
	'2', 'A: its tables stay syncing (their changes wait)');
my $r = resync('--tables', 'public.docs,public.pgbench_accounts');
is($r->{exit}, 0, 'A: resync under load returns 0') or diag("$r->{stdout}\n$r->{stderr}");
like($r->{stderr}, qr/\[resync\] copying 2 tables as of/, 'A: resync copied the two tables');
ok(FollowTest::running($run), 'A: start still runs');
ok(FollowTest::wait_for_load($src, $db, FollowTest::counter_rows($src, $db) + 300, 60),
	'A: the load goes on after the resync');
my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db), 'A: the target caught up');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);
$v = verify();
is($v->{exit}, 0, 'A: verify MATCH after the resync') or diag($v->{stdout});
like(FollowTest::stop_run($run, 'INT')->{stderr}, qr/resync of \{\d+,\d+\} asked/,
	'A: the follower answered the request');

# B. an apply conflict stops start; resync of that table with no start running
my $processed = $stats->{processed};
$tgt->safe_psql($db, 'DELETE FROM public.pgbench_tellers WHERE tid = 1');
$load = FollowTest::load_start($src, $db, scale => $scale, seconds => 3);
$run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
my $end = FollowTest::finish($run);
is($end->{exit}, 1, 'B: start stops on the conflict (exit 1)');
like($end->{stderr}, qr/HINT:.*pgrelocate resync --tables public\.pgbench_tellers/,
	'B: the apply error names resync of the table as a way out');
$r = resync('--tables', 'pgbench_tellers');
is($r->{exit}, 0, 'B: resync with no start running returns 0') or diag($r->{stderr});
like($r->{stderr}, qr/no pgrelocate start runs: following changes in this process/,
	'B: resync followed in its own process');
$run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
ok(FollowTest::wait_for_load($src, $db, FollowTest::counter_rows($src, $db) + 300, 60),
	'B: the load goes on while start follows again');
$stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'B: start follows again and caught up');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $processed + $stats->{processed});
$v = verify();
is($v->{exit}, 0, 'B: verify MATCH') or diag($v->{stdout});

# C. refusals
$r = resync('--tables', 'public.no_such_table');
is($r->{exit}, 2, 'C: no table matches: exit 2');
like($r->{stderr}, qr/--tables "public\.no_such_table" matches no table of the migration/,
	'C: the error names the pattern');
is(FollowTest::stop_run($run, 'INT')->{exit}, 0, 'start stops with exit 0');

done_testing();

# kill -9 at random moments during per-table sync, under a pgbench load, 20
# times: of start while it copies, then (once the copy is done and a start
# follows) of resync of two tables; every other run pauses 400 ms between a
# chunk's ready mark and its COMMIT (PGRELOCATE_TEST_PAUSE_AT=chunk-marked)
# so kills land there too.  Each restart keeps the tables that were ready at
# their consistent point and copies the others again at a new one; a
# resync after a killed one copies its tables again.
#
# Expected: every run lives until killed; kills land in the data phase,
# several of them while a chunk was between its copy and its commit; after
# the last run caught up: every table equal row by row, the counter exactly
# once, verify MATCH (exit 0, no difference), and every table ready at its
# own point.  Random moments: FOLLOW_TEST_SEED=N replays a run's delays.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use JSON::PP ();
use RelocateTest;
use FollowTest;

my $seed = $ENV{FOLLOW_TEST_SEED} // int(rand(1 << 30));
srand($seed);
note("random seed: $seed (FOLLOW_TEST_SEED=$seed to replay)");

my $KILLS = 20;
my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
my $scale = 5;
FollowTest::setup_pgbench($src, $db, scale => $scale);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.docs (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO public.docs SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;
CREATE TABLE public.events (id bigint PRIMARY KEY, kind int NOT NULL, note text);
INSERT INTO public.events SELECT g, g % 7, md5(g::text) FROM generate_series(1, 120000) g;
ANALYZE;
SQL
# small groups and chunks: many snapshots, and tables split in ranges
my @args = ('--replica-identity-full', '--jobs', 2, '--sync-group-size', '2MB',
	'--split-larger-than', '8MB');

my $load = FollowTest::load_start($src, $db, scale => $scale, seconds => 5);
ok(FollowTest::wait_for_load($src, $db, 100, 60), 'the load writes to the source');

my (@kills, @self_exits);
my $paused_kills = 0;
my %conn = FollowTest::conn($src, $tgt, $db);
my $follower;    # once the copy is done: a start that follows, while resyncs are killed
my @resync = ('--jobs', 2, '--tables', 'public.pgbench_accounts,public.docs');
for my $i (1 .. $KILLS)
{
	my $pause = $i % 2 == 0;
	my $env = { PGRELOCATE_TEST_PAUSE_AT => $pause ? 'chunk-marked:400' : undef };
	my $m = eval { FollowTest::migration($tgt, $db) };
	my $resyncing = $m && $m->{phase} eq 'follow';
	if ($resyncing && !$follower)
	{
		# the killed run's sessions first end (its follower lock with them)
		ok(FollowTest::wait_for_no_tool_sessions($tgt, 30), 'no session of a killed run is left');
		$follower = FollowTest::start_bg($src, $tgt, $db, args => \@args);
		ok(FollowTest::poll($tgt, $db,
				"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = "
				  . "'pgrelocate apply'", 60, $follower),
			'a start follows while resyncs run');
	}
	my $run = $resyncing
	  ? RelocateTest::start_copy(%conn, command => 'resync', args => \@resync, env => $env)
	  : FollowTest::start_bg($src, $tgt, $db, args => \@args, env => $env);
	my $delay = 0.4 + rand(1.6);
	Time::HiRes::sleep($delay);    # a random moment, not a wait for a condition
	# a chunk between its ready mark and its COMMIT: its target session is
	# idle in transaction, having updated pgrelocate.tables
	my $in_chunk = RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgrelocate copy' "
		  . "AND state = 'idle in transaction'");
	kill 'KILL', $run->{pid};
	my $r = RelocateTest::finish_copy($run);
	$m = eval { FollowTest::migration($tgt, $db) };
	my $phase = $resyncing ? 'resync' : $m ? $m->{phase} : 'none';
	if ($r->{signal} == 9)
	{
		push @kills, sprintf('%.2fs:%s%s', $delay, $phase, $in_chunk > 0 ? '*' : '');
		$paused_kills++ if $pause && $in_chunk > 0;
	}
	else
	{
		push @self_exits,
		  "run $i ($phase) exited by itself (exit $r->{exit}, signal $r->{signal}):\n$r->{stderr}";
	}
}
note('kills (delay:phase, * = a chunk was between its marks and its commit): ' . join(' ', @kills));
my $in_data = grep { /:data/ } @kills;
my $in_resync = grep { /:resync/ } @kills;
cmp_ok(scalar @kills, '>=', $KILLS, "$KILLS kill -9 of a running start or resync");
cmp_ok($in_data + $in_resync, '>=', $KILLS - 3, 'nearly all of them during per-table sync (copy or resync)');
cmp_ok($in_data, '>=', 4, 'kills landed in the data phase');
cmp_ok($paused_kills, '>=', 1, 'kills landed between a chunk\'s ready mark and its commit');
is(scalar @self_exits, 0, 'every restarted run went on until killed') or diag(join "\n---\n", @self_exits);

# the last run: it copies what is left and follows; a last resync completes
my $run = $follower // FollowTest::start_bg($src, $tgt, $db, args => \@args);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 240), 'the last run reached the follow phase')
  or diag(${ $run->{stderr} });
if ($follower)
{
	my $rs = RelocateTest::run_copy(%conn, command => 'resync', args => \@resync);
	is($rs->{exit}, 0, 'a last resync completes what the killed ones left') or diag($rs->{stderr});
}
ok(FollowTest::wait_for_load($src, $db, FollowTest::counter_rows($src, $db) + 300, 60),
	'the load goes on during the last run');
my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, flush => 1), 'the target caught up');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FILTER (WHERE sync_state = 'ready') = count(*) FROM pgrelocate.tables"),
	't', 'every table is ready');

my $v = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db),
	command => 'verify', args => [ '--json', '--jobs', 2 ]);
my $j = eval { JSON::PP->new->utf8->decode($v->{stdout}) } // {};
is($v->{exit}, 0, 'verify: MATCH (exit 0)') or diag("$v->{stdout}\n$v->{stderr}");
is($j->{row_differences_total}, 0, 'verify: no row difference');

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT stops the last run with exit 0') or diag($r->{stderr});

done_testing();

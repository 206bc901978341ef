# kill -9 of pgrelocate start at random moments, during the copy and during
# the follow, under a pgbench load; the same command restarted each time.
#
# Expected: every restart goes on by itself (no run fails on its own: each
# one is alive when killed), kills land in the copy phases and in the follow
# phase, and in the end, once the load stopped and the target caught up:
# every table equals the source row by row; the unique counter written by
# every load transaction is on the target exactly once (no duplicate, no
# gap, nothing extra), including every transaction pgbench saw committed;
# SIGINT then stops start with exit 0.
#
# The moments are random: the seed is printed (FOLLOW_TEST_SEED=N to
# replay a run's delays).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use RelocateTest;
use FollowTest;

my $seed = $ENV{FOLLOW_TEST_SEED} // int(rand(1 << 30));
srand($seed);
note("random seed: $seed (FOLLOW_TEST_SEED=$seed to replay)");

my $KILLS_IN_COPY   = 8;     # at most, before letting the copy finish
my $KILLS_IN_FOLLOW = 12;    # at least
my $KILLS           = 21;    # at least, in all

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
my $scale = 3;               # 300,000 accounts: a copy of a few seconds
FollowTest::setup_pgbench($src, $db, scale => $scale);
my @args = ('--replica-identity-full', '--jobs', 2);

my $load = FollowTest::load_start($src, $db, scale => $scale, seconds => 5);
ok(FollowTest::wait_for_load($src, $db, 100, 60), 'the load writes to the source');

# Start, wait a random moment, kill -9; returns the phase the kill found and
# whether the run was still alive (killed by the signal).
my (@kills, @self_exits);
sub run_and_kill
{
	my ($delay_s) = @_;
	my $run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
	Time::HiRes::sleep($delay_s);    # a random moment, not a wait for a condition
	kill 'KILL', $run->{pid};
	my $r = RelocateTest::finish_copy($run);
	my $m = eval { FollowTest::migration($tgt, $db) };
	my $phase = $m ? $m->{phase} : 'none';
	if ($r->{signal} == 9)
	{
		push @kills, sprintf('%.2fs:%s', $delay_s, $phase);
	}
	else
	{
		push @self_exits,
		  "run " . (@kills + @self_exits + 1) . " exited by itself (exit $r->{exit}, "
		  . "signal $r->{signal}) before the kill at ${delay_s}s:\n$r->{stderr}";
	}
	return $phase;
}

# 1. kills during the copy: short delays, at most $KILLS_IN_COPY of them
my $phase = 'none';
for (1 .. $KILLS_IN_COPY)
{
	$phase = run_and_kill(0.3 + rand(1.5));
	last if $phase eq 'follow';
}
# 2. if the copy is not over yet, let one run finish it, then kill it too
if ($phase ne 'follow')
{
	my $run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
	ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180),
		'a restarted run completes the copy interrupted by kill -9');
	Time::HiRes::sleep(rand(1.5));
	kill 'KILL', $run->{pid};
	my $r = RelocateTest::finish_copy($run);
	push @kills, 'after-copy:follow' if $r->{signal} == 9;
	push @self_exits, "the run finishing the copy exited by itself (exit $r->{exit}):\n$r->{stderr}"
	  if $r->{signal} != 9;
}
# 3. kills during the follow, under the load
my $follow_kills = $KILLS - @kills - @self_exits;
$follow_kills = $KILLS_IN_FOLLOW if $follow_kills < $KILLS_IN_FOLLOW;
for (1 .. $follow_kills)
{
	run_and_kill(0.2 + rand(3.0));
}
note('kills (delay:phase found): ' . join(' ', @kills));
my $in_copy = grep { !/:follow$/ } @kills;
my $in_follow = grep { /:follow$/ } @kills;
cmp_ok(scalar @kills, '>=', 20, '20 or more kill -9 (of a running start)');
cmp_ok($in_copy, '>=', 1, 'some kills landed in the copy phases');
cmp_ok($in_follow, '>=', 10, 'kills landed in the follow phase');
is(scalar @self_exits, 0, 'every restarted run went on until killed (none failed on its own)')
  or diag(join "\n---\n", @self_exits);

# 4. not random: apply blocked by a lock on the target while the stream
# goes on.  Nothing commits on the target, so the slot must not be told
# that anything more was flushed; then kill -9 in that state.
SKIP:
{
	my $run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
	my $before = FollowTest::counter_rows($src, $db);
	ok(FollowTest::poll($tgt, $db, "SELECT count(*) >= $before + 100 FROM public.txn_counter", 120, $run),
		'blocked apply: start applies the load')
	  or do { kill 'KILL', $run->{pid}; FollowTest::finish($run); skip('start does not follow', 6); };
	my $name = FollowTest::migration($tgt, $db)->{replication_name};
	my $slot = RelocateTest::quote_literal($name);
	my $flushed = "SELECT coalesce(max(confirmed_flush_lsn), '0/0') FROM pg_replication_slots "
	  . "WHERE slot_name = $slot";
	my $lock = $tgt->background_psql($db);
	$lock->query_safe('BEGIN; LOCK TABLE public.txn_counter IN ACCESS EXCLUSIVE MODE');
	# until apply holds a change it cannot write, an idle apply may rightly
	# confirm a keepalive position past its last commit (no transaction
	# commits in between): measure from the moment it is blocked
	ok(FollowTest::poll($tgt, $db,
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate apply' "
			  . "AND wait_event_type = 'Lock'", 60, $run),
		'blocked apply: apply waits on the lock');
	my $c0 = RelocateTest::query($src, $db, $flushed);
	my $p0 = FollowTest::origin_progress($tgt, $db, $name);
	# the stream goes on: 1 MB more sent than the target committed; then
	# start sends feedback at least once more
	my $walsender = "FROM pg_stat_replication AS r JOIN pg_replication_slots AS s "
	  . "ON s.active_pid = r.pid WHERE s.slot_name = $slot";
	ok(FollowTest::poll($src, $db, "SELECT r.sent_lsn > '$p0'::pg_lsn + 1000000 $walsender", 60, $run),
		'blocked apply: the stream goes on (1 MB more sent than applied)');
	my $t1 = RelocateTest::query($src, $db, 'SELECT clock_timestamp()');
	ok(FollowTest::poll($src, $db, "SELECT r.reply_time > '$t1'::timestamptz $walsender", 30, $run),
		'blocked apply: start sends feedback meanwhile');
	my $p1 = FollowTest::origin_progress($tgt, $db, $name);
	is($p1, $p0, 'blocked apply: nothing commits on the target');
	my $c1 = RelocateTest::query($src, $db, $flushed);
	is(RelocateTest::query($src, $db, "SELECT '$c1'::pg_lsn <= greatest('$c0'::pg_lsn, '$p1'::pg_lsn)"),
		't', 'blocked apply: the slot\'s confirmed_flush_lsn does not pass what the target committed')
	  or diag("confirmed_flush_lsn $c0 -> $c1, origin progress $p1");
	kill 'KILL', $run->{pid};
	my $r = FollowTest::finish($run);
	is($r->{signal}, 9, 'blocked apply: start killed -9 while blocked');
	$lock->query_safe('COMMIT');
	$lock->quit;
}

# 5. the last run: it follows until stopped
my $run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'the last run is in the follow phase');
my $at_last = FollowTest::counter_rows($src, $db);
ok(FollowTest::wait_for_load($src, $db, $at_last + 300, 60), 'the load goes on during the last run');
my $stats = FollowTest::load_stop($load);
my $x = FollowTest::wait_caught_up($src, $tgt, $db, flush => 1);
ok(defined $x, 'the target caught up after the load stopped');

FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT stops the last run with exit status 0')
  or diag("exit $r->{exit}, signal $r->{signal}\nstderr:\n$r->{stderr}");
ok(FollowTest::wait_for_no_tool_sessions($src, 30), 'no pgrelocate session left on the source');

done_testing();

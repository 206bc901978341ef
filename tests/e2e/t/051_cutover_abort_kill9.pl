# A cutover that cannot finish in time, and one that dies: with pgbench
# (8 clients) writing through a real pgbouncer all along,
#  - a long transaction holds the drain past a tiny --max-pause: the cutover
#    aborts, writes resume on the source, no client fails, replication goes on;
#  - pgrelocate killed with SIGKILL at each step: its watchdog resumes
#    pgbouncer, and the next run settles what the dead one left and finishes
#    (or finds there is nothing to do);
#  - after all that, a cutover and a rollback each killed once more complete
#    on the next run, and no transaction is lost or doubled.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

use BouncerTest;
use FollowTest;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
FollowTest::setup_pgbench($src, 'app');
my $b = BouncerTest->start($src, 'app');
my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
# throttled: the test is about kills at each step, not about a target that
# cannot keep up (an unthrottled pgbench on 2 busy cores outran the apply and
# the cutovers aborted on lag, as they should)
my $load = $b->load_start('app', clients => 8, rate => 300);
ok(FollowTest::wait_for_load($src, 'app', 200, 120), 'load through pgbouncer commits on the source');

my $max_pause_s = 2;
my @args = ($b->cutover_args('app'), '--max-pause', "${max_pause_s}s");

sub cutover
{
	my (%o) = @_;
	return RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'),
		command => $o{command} // 'cutover',
		args => [ @args, @{ $o{args} // [] } ],
		env => { PGRELOCATE_TEST_KILL_AT => $o{kill_at} });
}

# A dead run's hold on the follower expires shortly after --max-pause.
sub wait_hold_expired
{
	return RelocateTest::wait_until($tgt, 'app',
		"SELECT count(*) FROM pgrelocate.sync_points WHERE state IN "
		  . "('requested', 'holding', 'advancing', 'reached') AND expires_at > clock_timestamp()",
		'0', 60);
}

# --- forced abort: a transaction through pgbouncer outlives --max-pause
my ($lout, $lerr) = ('', '');
my $long = IPC::Run::start(
	[ 'psql', '-X', '-h', '127.0.0.1', '-p', $b->{port}, '-d', 'app', '-v', 'ON_ERROR_STOP=1',
	  '-c', 'BEGIN', '-c', 'SELECT pg_sleep(4)', '-c', 'COMMIT' ],
	'<', \undef, '>', \$lout, '2>', \$lerr);
ok(RelocateTest::wait_until($src, 'app',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'", 't', 30),
	'a long transaction runs through pgbouncer');
my $t0 = Time::HiRes::time();
RelocateTest::copy_fails_like(
	'cutover while a long transaction holds the drain',
	[ qr/\[cutover\] aborted: clients stay on the source/,
	  qr/DETAIL:  transactions in flight did not finish within --max-pause 300 ms: writes resumed on the source/ ],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover',
	args => [ $b->cutover_args('app'), '--max-pause', '300ms' ]);
my $row = $b->show_database('app');
is($row->{paused}, '0', 'abort: pgbouncer is not paused');
is($row->{port}, $src->port, 'abort: pgbouncer still points at the source');
diag(sprintf('abort: the cutover gave up after %.0f ms', 1000 * (Time::HiRes::time() - $t0)));
ok($long->finish, 'abort: the long transaction commits') or diag($lerr);
is(FollowTest::migration($tgt, 'app')->{phase}, 'follow', 'abort: the migration still follows');
ok(defined FollowTest::wait_caught_up($src, $tgt, 'app', run => $run),
	'abort: replication goes on');

# --- kill -9 at each step of a dry run (pause, drain, sequences)
for my $point (qw(prepare pause hold fence drain sequences))
{
	# each killed run held the follower until its hold expired: let the
	# backlog drain first, so the next run is not aborted on lag instead
	ok(defined FollowTest::wait_caught_up($src, $tgt, 'app', run => $run),
		"before the kill at $point: replication caught up");
	my $r = cutover(args => ['--dry-run'], kill_at => $point);
	is($r->{signal}, 9, "kill at $point: pgrelocate died of SIGKILL");
	my $waited = $b->wait_not_paused('app', $max_pause_s + 10);
	ok(defined $waited, "kill at $point: pgbouncer is not left paused");
	diag(sprintf("kill at %s: pgbouncer resumed %.0f ms after pgrelocate died", $point,
		1000 * ($waited // -1)));
	like($r->{stderr}, qr/\[watchdog\] pgrelocate ended while writes were paused: resumed writes on app/,
		"kill at $point: the watchdog resumed") unless $point eq 'prepare' || $point eq 'hold';
	is($b->show_database('app')->{port}, $src->port, "kill at $point: pgbouncer points at the source");
	ok(wait_hold_expired(), "kill at $point: the dead run's hold on the follower expires");
}
my $dry = cutover(args => ['--dry-run']);
ok($dry->{ok}, 'a dry run after the kills succeeds') or diag($dry->{stderr});
like($dry->{stderr}, qr/an earlier run \(cutover \d+\) was interrupted at step \w+: writes resumed on the old side/,
	'it settles what the killed runs left');
is(RelocateTest::query($tgt, 'app', 'SELECT count(*) FROM pgrelocate.cutovers WHERE outcome IS NULL'),
	'0', 'no unfinished cutover left in the record');

# --- a real cutover killed after the config is written, before RELOAD
my $r = cutover(kill_at => 'config-written');
is($r->{signal}, 9, 'kill after the config is written: died of SIGKILL');
ok(defined $b->wait_not_paused('app', $max_pause_s + 10), 'kill after the config is written: not left paused');
is($b->show_database('app')->{port}, $src->port,
	'kill after the config is written: pgbouncer still runs with the source (no RELOAD)');
ok(wait_hold_expired(), 'the dead run\'s hold expires');
ok(defined FollowTest::wait_caught_up($src, $tgt, 'app', run => $run),
	'before the next cutover: replication caught up');
$r = cutover();
ok($r->{ok}, 'the next cutover completes') or diag($r->{stderr});
like($r->{stderr}, qr/interrupted at step switching: writes resumed on the old side/,
	'it restored the entry the dead run had written');
is($b->show_database('app')->{port}, $tgt->port, 'pgbouncer points at the target');
is(FollowTest::migration($tgt, 'app')->{phase}, 'reverse', 'phase reverse');
ok(FollowTest::wait_for_load($tgt, 'app', FollowTest::counter_rows($tgt, 'app') + 200, 120),
	'the load commits on the target');

# --- a rollback killed after the switch, before RESUME
# (first the way back catches up: after the cutover it has the load's
# backlog to apply, and a drain longer than --max-pause would abort the
# rollback before the step this case is about)
my $tlsn = RelocateTest::query($tgt, 'app', 'SELECT pg_current_wal_lsn()');
ok(RelocateTest::wait_until($tgt, 'app',
		"SELECT bool_and(confirmed_flush_lsn >= '$tlsn') FROM pg_replication_slots "
		  . "WHERE slot_name LIKE '%\\_reverse'", 't', 120),
	'the reverse direction caught up with the target');
$r = cutover(command => 'rollback', kill_at => 'switch');
is($r->{signal}, 9, 'rollback killed after the switch: died of SIGKILL');
ok(defined $b->wait_not_paused('app', $max_pause_s + 10), 'rollback killed after the switch: not left paused');
is($b->show_database('app')->{port}, $src->port, 'the switch back had taken effect');
$r = cutover(command => 'rollback');
ok($r->{ok}, 'the next rollback settles it') or diag($r->{stderr});
like($r->{stderr}, qr/interrupted at step switching: its switch had taken effect/,
	'it records the switch the dead run made');
like($r->{stderr}, qr/points at the source already: nothing to do/, 'and does nothing more');
is(FollowTest::migration($tgt, 'app')->{phase}, 'rolled-back', 'phase rolled-back');

my $stats = $b->load_stop($load);
is($stats->{failed_runs}, 0, 'no pgbench run failed through all of it');
is($stats->{failed}, 0, 'no failed transaction');
diag("longest transaction: $stats->{max_latency_ms} ms");
is(FollowTest::counter_rows($src, 'app'), $stats->{processed},
	'source: exactly one counter row per committed transaction');
# The target stopped receiving writes at the rollback; all it has is on the source.
my %on_src = map { $_ => 1 } split /\n/,
  RelocateTest::query($src, 'app', 'SELECT n, client, at FROM txn_counter');
my @missing = grep { !$on_src{$_} } split /\n/,
  RelocateTest::query($tgt, 'app', 'SELECT n, client, at FROM txn_counter');
is(scalar @missing, 0, 'every counter row written on the target is on the source');

FollowTest::stop_run($run);
FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
is(join(', ', FollowTest::leftovers($src, $tgt, 'app')), '', 'cleanup leaves nothing behind');
$b->stop;
done_testing();

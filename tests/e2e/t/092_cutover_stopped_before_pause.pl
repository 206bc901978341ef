# cutover under faults before the pause (issue 15, src/WAITS.md; 072 covers
# a server stopped inside the pause):
#
#   A. the target is stopped (SIGSTOP) after the cutover's preparation, under
#      a pgbench load through pgbouncer: the cutover ends by itself with
#      exit status 1, naming the target's host and port, and pgbouncer is
#      never paused; after SIGCONT start has ridden through and the target
#      follows again.
#   B. pgrelocate is killed (-9) inside the pause of a cutover driven by
#      hook commands whose --resume-command hangs: the watchdog runs it with
#      a budget (5 s) and then kills its process group, says so, and ends
#      (before: system() in the watchdog waited for ever).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use BouncerTest;
use FaultTest;
use FollowTest;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
my $t0;
FollowTest::setup_pgbench($src, 'app');
my $b = BouncerTest->start($src, 'app');
my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
END { FollowTest::stop_run($run) if $run && !$run->{result}; }
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
my $load = $b->load_start('app', clients => 2);
ok(FollowTest::wait_for_load($src, 'app', 100, 120), 'load through pgbouncer commits on the source');

# A. the target stopped before the pause
my $c = RelocateTest::start_copy(FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover',
	args => [ $b->cutover_args('app'), '--max-pause', '3s', '--no-reverse' ],
	env => { PGRELOCATE_TEST_STALL_AT => 'prepare:3000', PGRELOCATE_TEST_STATEMENT_MS => '3000' },
	timeout => 90);
# the run is recorded, then waits 3 s (the test hook) before its hold
ok(RelocateTest::wait_until($tgt, 'app',
	'SELECT count(*) > 0 FROM pgrelocate.cutovers WHERE outcome IS NULL', 't', 60),
	'A: the cutover prepared');
FaultTest::freeze($tgt);
$t0 = time;
my $ever_paused = 0;
while (kill(0, $c->{pid}) && time - $t0 < 60)
{
	my $row = eval { $b->show_database('app') };
	$ever_paused = 1 if $row && $row->{paused} eq '1';
	eval { $c->{h}->pump_nb };
	last if $c->{h}->pumpable == 0;
	usleep(50_000);
}
my $r = RelocateTest::finish_copy($c);
my $took = time - $t0;
is($r->{exit}, 1, 'A: the cutover ends with exit status 1 while the target is still stopped');
cmp_ok($took, '<', 30, sprintf('A: within its bounds (%.1f s)', $took));
like($r->{stderr}, qr/port=${\ $tgt->port}/, 'A: the message names the target');
ok(!$ever_paused, 'A: pgbouncer was never paused');
my $row = $b->show_database('app');
is($row->{paused}, '0', 'A: pgbouncer is not paused, with the target still stopped');
is($row->{port}, $src->port, 'A: pgbouncer still points at the source');
FaultTest::thaw($tgt);
ok(FollowTest::running($run), 'A: start rode through');
my $now = FollowTest::counter_rows($src, 'app');
ok(FollowTest::wait_for_load($src, 'app', $now + 100, 120), 'A: the load commits on the source');
ok(FollowTest::poll($tgt, 'app', "SELECT count(*) >= $now + 100 FROM txn_counter", 120, $run),
	'A: and the target follows');
my $stats = $b->load_stop($load);

# A's run could not record its end on the stopped target: the next run
# settles it (here a dry run with hook commands that do nothing)
my $settle = RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover',
	args => [ '--pause-command', 'true', '--switch-command', 'true', '--resume-command', 'true',
		'--dry-run', '--no-reverse' ]);
is($settle->{exit}, 0, 'a dry run after A completes') or diag($settle->{stderr});
like($settle->{stderr}, qr/an earlier run \(cutover \d+\) was interrupted at step \w+: writes resumed on the old side/,
	'and settles the run A left unfinished');

# B. a hanging --resume-command in the watchdog
my $marker = 600 + int(rand(300));
$t0 = time;
$r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover',
	args => [ '--pause-command', 'true', '--switch-command', 'true',
		'--resume-command', "sleep $marker", '--max-pause', '3s', '--no-reverse' ],
	env => { PGRELOCATE_TEST_KILL_AT => 'pause' },
	timeout => 60);
$took = time - $t0;
is($r->{signal}, 9, 'B: pgrelocate was killed in the pause') or diag($r->{stderr});
like($r->{stderr}, qr/\[watchdog\] the resume command did not finish within 5000 ms: killed/,
	'B: the watchdog kills the hanging resume command and says so');
cmp_ok($took, '<', 20, sprintf('B: the watchdog ends (its output closes) within its budget (%.1f s)', $took));
is(join(',', grep { /^sleep $marker$/ } split /\n/, `ps -eo args`), '',
	'B: no process of the resume command is left');

my $s = FollowTest::stop_run($run);
ok($s->{signal} == 0, 'start stops on SIGINT') or diag($s->{stderr});
FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
is(join(', ', FollowTest::leftovers($src, $tgt, 'app')), '', 'nothing left behind');
$b->stop;
done_testing();

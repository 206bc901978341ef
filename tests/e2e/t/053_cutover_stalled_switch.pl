# pgrelocate alive but slow once the switch has begun (here: 1.5 s between
# writing the new config and RELOAD, with --max-pause 300ms): the watchdog
# must not resume clients in the middle of the switch, since they would write
# to the source after the fence and take sequence values the target hands out
# again.  The switch completes; nothing is lost and no transaction fails.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use BouncerTest;
use FollowTest;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
FollowTest::setup_pgbench($src, 'app');
my $b = BouncerTest->start($src, 'app');
my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
my $load = $b->load_start('app', clients => 4);
ok(FollowTest::wait_for_load($src, 'app', 200, 120), 'load through pgbouncer commits on the source');

my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover',
	args => [ $b->cutover_args('app'), '--max-pause', '300ms', '--no-reverse' ],
	env => { PGRELOCATE_TEST_STALL_AT => 'config-written:1500' });
is($r->{exit}, 0, 'a stalled switch completes: exit status 0') or diag($r->{stderr});
unlike($r->{stderr}, qr/\[watchdog\]/, 'the watchdog did not resume in the middle of the switch');
like($r->{stdout}, qr/cutover done: writes paused for \d+ ms/, 'the cutover reports its (long) pause');
is($b->show_database('app')->{port}, $tgt->port, 'pgbouncer points at the target in the end');
is($b->show_database('app')->{paused}, '0', 'pgbouncer is not paused');

ok(FollowTest::wait_for_load($tgt, 'app', FollowTest::counter_rows($tgt, 'app') + 200, 120),
	'the load commits on the target');
my $stats = $b->load_stop($load);
is($stats->{failed} + $stats->{failed_runs}, 0, 'no failed transaction');
my $r2 = FollowTest::finish($run);
ok($r2->{ok}, 'start ends after the cutover (--no-reverse)') or diag($r2->{stderr});
my %on_tgt = map { $_ => 1 } split /\n/, RelocateTest::query($tgt, 'app', 'SELECT n FROM txn_counter');
my @lost = grep { !$on_tgt{$_} } split /\n/, RelocateTest::query($src, 'app', 'SELECT n FROM txn_counter');
is(scalar @lost, 0, 'every counter row committed on the source is on the target');
is(FollowTest::counter_rows($tgt, 'app'), $stats->{processed}, 'target: one counter row per committed transaction');

FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
$b->stop;
done_testing();

# A server stopped (SIGSTOP of postmaster and backends) inside the cutover's
# pause, under a pgbench load through pgbouncer (issue 15):
#
#   A. the source stopped just after PAUSE: the fence's query is never
#      answered; at --max-pause plus the watchdog's margin the cutover closes
#      its connections to the source, names the wait and the host, aborts,
#      and pgbouncer is resumed (still pointing at the source) while the
#      source is still stopped
#   B. the target stopped just after PAUSE: the drain waits on it; the
#      source's connections are closed first, then the target's; the cutover
#      aborts and pgbouncer is resumed on the source
#
# After SIGCONT, start has ridden through, and the same cutover command
# completes: nothing lost, every counter row on the target exactly once.
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
FollowTest::setup_pgbench($src, 'app');
my $b = BouncerTest->start($src, 'app');
my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
my $load = $b->load_start('app', clients => 4);
ok(FollowTest::wait_for_load($src, 'app', 200, 120), 'load through pgbouncer commits on the source');

sub cutover_with_stopped
{
	my ($label, $node, $expect) = @_;
	my $c = RelocateTest::start_copy(FollowTest::conn($src, $tgt, 'app'),
		command => 'cutover',
		args => [ $b->cutover_args('app'), '--max-pause', '3s', '--no-reverse' ],
		env => { PGRELOCATE_TEST_STALL_AT => 'pause:1500' },
		timeout => 60);
	my $paused = 0;
	for (1 .. 600)
	{
		my $row = eval { $b->show_database('app') };
		if ($row && $row->{paused} eq '1') { $paused = 1; last; }
		usleep(20_000);
	}
	ok($paused, "$label: the cutover paused pgbouncer");
	FaultTest::freeze($node);
	my $t0 = time;
	my $r = RelocateTest::finish_copy($c);
	my $took = time - $t0;
	is($r->{exit}, 1, "$label: the cutover ends with exit status 1 while the server is still stopped");
	cmp_ok($took, '<', 12, sprintf("$label: within --max-pause and the guard's grace (%.1f s)", $took));
	like($r->{stderr}, $_, "$label: says $_") for @$expect;
	like($r->{stderr}, qr/aborted: clients stay on the source/, "$label: the cutover aborts");
	my $row = $b->show_database('app');
	is($row->{paused}, '0', "$label: pgbouncer is not paused, with the server still stopped");
	is($row->{port}, $src->port, "$label: pgbouncer still points at the source");
	FaultTest::thaw($node);
	ok(FollowTest::running($run), "$label: start rode through");
	my $now = FollowTest::counter_rows($src, 'app');
	ok(FollowTest::wait_for_load($src, 'app', $now + 200, 120), "$label: the load commits on the source again");
	ok(FollowTest::poll($tgt, 'app', "SELECT count(*) >= $now + 200 FROM txn_counter", 120, $run),
		"$label: and the target follows");
}

my $srcwhere = qr/\(host=127\.0\.0\.1 port=${\ $src->port} dbname=app\)|\(host=\S+ port=${\ $src->port} dbname=app\)/;
cutover_with_stopped('A. source stopped in the pause', $src,
	[ qr/\[cutover\] a query was still unanswered 3500 ms into the pause: closing the connections to the source \(host=\S+ port=${\ $src->port} dbname=app\)/ ]);
cutover_with_stopped('B. target stopped in the pause', $tgt,
	[ qr/\[cutover\] a query was still unanswered 5500 ms into the pause: closing the connections to the target \(host=\S+ port=${\ $tgt->port} dbname=app\)/ ]);

my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover',
	args => [ $b->cutover_args('app'), '--max-pause', '3s', '--no-reverse' ]);
is($r->{exit}, 0, 'the cutover then completes') or diag($r->{stderr});
is($b->show_database('app')->{port}, $tgt->port, 'pgbouncer points at the target');
is($b->show_database('app')->{paused}, '0', 'pgbouncer is not paused');
ok(FollowTest::wait_for_load($tgt, 'app', FollowTest::counter_rows($tgt, 'app') + 200, 120),
	'the load commits on the target');
my $stats = $b->load_stop($load);
my $r2 = FollowTest::finish($run);
ok($r2->{ok}, 'start ends after the cutover (--no-reverse)') or diag($r2->{stderr});
my %on_tgt;
$on_tgt{$_}++ for split /\n/, RelocateTest::query($tgt, 'app', 'SELECT n FROM txn_counter');
my @lost = grep { !$on_tgt{$_} } split /\n/, RelocateTest::query($src, 'app', 'SELECT n FROM txn_counter');
is(scalar @lost, 0, 'every counter row committed on the source is on the target');
is(scalar(grep { $_ > 1 } values %on_tgt), 0, 'none twice');
cmp_ok(scalar keys %on_tgt, '>=', $stats->{processed}, 'every transaction pgbench saw committed is there');
FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
$b->stop;
done_testing();

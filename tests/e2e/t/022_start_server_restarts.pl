# The source and the target restart while pgrelocate start follows, under a
# pgbench load: pgrelocate reconnects by itself (with backoff) every time.
#
#   A. source: fast shutdown, start
#   B. source: immediate shutdown (crash), start: the slot rewinds to what
#      was confirmed, re-sent transactions are skipped thanks to the origin
#   C. target: fast shutdown, start
#   D. target: immediate shutdown (crash), start: progress comes back from
#      the replication origin, committed with the applied changes
#
# After each one the target applies changes committed on the source after
# the restart (the tool reconnected); start never exits on its own.  In the
# end, the load stopped and the target caught up: every table equals the
# source row by row, the counter holds every source transaction exactly
# once (and every one pgbench saw committed: the source commits
# synchronously, so a crash loses none), and SIGINT gives exit 0.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(
	dbname      => $db,
	source_conf => 'synchronous_commit = on');
FollowTest::setup_pgbench($src, $db, scale => 1);

my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
my $load = FollowTest::load_start($src, $db, seconds => 3);

# The tool applies what the source commits from now on: wait until the
# target holds at least $more counter rows beyond what the source held when
# called (once the load wrote them).
sub applies_new_changes
{
	my ($label, $more) = @_;
	my $now = FollowTest::counter_rows($src, $db);
	ok(FollowTest::wait_for_load($src, $db, $now + $more, 120),
		"$label: the load writes to the source again");
	ok(FollowTest::poll($tgt, $db, "SELECT count(*) >= $now + $more FROM public.txn_counter", 180, $run),
		"$label: the target applies changes committed after it")
	  or diag('target counter rows: ' . FollowTest::counter_rows($tgt, $db)
		  . "\nstderr so far:\n${ $run->{stderr} }");
	ok(FollowTest::running($run), "$label: start is still running");
}

applies_new_changes('before the restarts', 500);

$src->restart;    # fast
applies_new_changes('A. source fast restart', 500);

$src->stop('immediate');
$src->start;
applies_new_changes('B. source immediate stop', 500);

$tgt->restart;    # fast
applies_new_changes('C. target fast restart', 500);

$tgt->stop('immediate');
$tgt->start;
applies_new_changes('D. target immediate stop', 500);

my $stats = FollowTest::load_stop($load);
my $x = FollowTest::wait_caught_up($src, $tgt, $db, flush => 1, run => $run);
ok(defined $x, 'the target caught up after the load stopped');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT after the restarts: exit status 0')
  or diag("exit $r->{exit}, signal $r->{signal}\nstderr:\n$r->{stderr}");
my $reconnects = () = $r->{stderr} =~ /connection lost; reconnecting/g;
cmp_ok($reconnects, '>=', 4, 'start said it lost the connection and reconnected (each restart)');
unlike($r->{stderr}, qr/AddressSanitizer|runtime error:|Segmentation/, 'no crash report');

done_testing();

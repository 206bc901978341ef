# The source and the target restart while pgrelocate start follows, under a
# pgbench load: pgrelocate reconnects by itself (with backoff) every time.
#
#   A. source: fast shutdown, start
#   B. source: immediate shutdown (crash), start: the slot rewinds to what
#      was confirmed, re-sent transactions are skipped thanks to the origin
#   C. target: fast shutdown, start
#   D. target: immediate shutdown (crash), start: progress comes back from
#      the replication origin, committed with the applied changes
#   E. target: the apply session terminated 8 times at random moments
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
use Time::HiRes ();
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(
	dbname      => $db,
	source_tcp  => 1,
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

# E. the target ends the apply session (pg_terminate_backend, as a DBA or a
# failover would) at 8 random moments: wherever its error lands in the
# pipeline (a statement's result or a pipeline sync), start reconnects
my $killed = 0;
for my $i (1 .. 8)
{
	Time::HiRes::usleep(int(rand(400_000)) + 50_000);
	$killed += RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pg_stat_activity, pg_terminate_backend(pid) "
		  . "WHERE application_name = 'pgrelocate apply'");
	last unless FollowTest::running($run);
	# the next kill finds the new session once start reconnected
	FollowTest::poll($tgt, $db,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate apply'", 60, $run);
}
cmp_ok($killed, '>=', 4, "E. the apply session was terminated $killed times");
applies_new_changes('E. apply session terminated', 300);

my $stats = FollowTest::load_stop($load);
my $x = FollowTest::wait_caught_up($src, $tgt, $db, flush => 1, run => $run);
ok(defined $x, 'the target caught up after the load stopped');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT after the restarts: exit status 0')
  or diag("exit $r->{exit}, signal $r->{signal}\nstderr:\n$r->{stderr}");
my @delays = $r->{stderr} =~ /connection lost; reconnecting in (\d+) s/g;
cmp_ok(scalar @delays, '>=', 5, 'start said it lost the connection and reconnected (each restart)');
# a session that was connected and streaming was healthy: the next loss is a new
# problem and waits 1 s again, not twice the last wait (12 losses would
# otherwise have reached the 30 s cap)
cmp_ok((sort { $b <=> $a } @delays)[0], '<=', 8,
	'the reconnect delay starts again at 1 s after a session that was streaming (' . join(',', @delays) . ')');
unlike($r->{stderr}, qr/AddressSanitizer|runtime error:|Segmentation/, 'no crash report');

done_testing();

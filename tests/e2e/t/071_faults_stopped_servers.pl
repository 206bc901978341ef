# A source or target whose postmaster and backends are stopped (SIGSTOP:
# the kernel still acknowledges packets, the server answers nothing) while
# pgrelocate start copies and follows under a pgbench load (issue 15):
#
#   A. source stopped mid-copy for 12 s: the copy waits and goes on, and
#      the stall report (its silence shortened to 3 s) names the source and
#      the chunk that waits
#   B. source stopped mid-follow for 20 s, past wal_sender_timeout (3 s) plus
#      the margin (5 s): the stream says it heard nothing for 8 s from which
#      host, reconnects (each connection attempt ends after connect_timeout),
#      and streams again once the source goes on
#   C. target stopped mid-follow for 12 s: apply waits, is reported, and
#      goes on
#   D. source stopped, then killed (SIGKILL) and started again
#   E. target stopped, then killed and started again
#
# start never exits; in the end every table equals the source row by row and
# the counter holds every source transaction exactly once.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FaultTest;
use FollowTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(
	dbname      => $db,
	source_tcp  => 1,
	source_conf => "synchronous_commit = on\nwal_sender_timeout = 3s");
FollowTest::setup_pgbench($src, $db, scale => 1);
# enough rows that the copy takes a few seconds
$src->safe_psql($db, q{
CREATE TABLE public.bulk (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO public.bulk SELECT i, md5(i::text) FROM generate_series(1, 1500000) i;
});

sub pause_for
{
	my ($s) = @_;
	my $end = time + $s;
	usleep(100_000) while time < $end;
}

# A. the source stops while the copy reads from it
my $run = FollowTest::start_bg($src, $tgt, $db, args => [ '--replica-identity-full', '--jobs', '2' ],
	env => { PGRELOCATE_TEST_STALL_MS => '3000' });
ok(FollowTest::poll($src, $db,
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'COPY %' AND application_name LIKE 'pgrelocate%'},
		120, $run),
	'A. the copy reads from the source');
FaultTest::freeze($src);
my $pending = RelocateTest::query($tgt, $db, q{SELECT count(*) FROM pgrelocate.chunks WHERE state = 'pending'});
cmp_ok($pending, '>', 0, "A. the source is stopped mid-copy ($pending chunks pending)");
my $seen_a = length ${ $run->{stderr} };
pause_for(12);
ok(FollowTest::running($run), 'A. start waits while the source is stopped');
FollowTest::running($run);
like(substr(${ $run->{stderr} }, $seen_a),
	qr/\[copy public\.\S+ [^\]]*\] waiting for the source: nothing received for \d+ s, and a new connection got no answer within 3 s \(host=127\.0\.0\.1 port=${\ $src->port}\)/,
	'A. the stall report names the chunk, the source, its host and port');
FaultTest::thaw($src);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'A. after SIGCONT the copy completes and start follows');

my $load = FollowTest::load_start($src, $db, seconds => 2);

sub applies_new_changes
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($label, $more) = @_;
	my $now = FollowTest::counter_rows($src, $db);
	ok(FollowTest::wait_for_load($src, $db, $now + $more, 120), "$label: the load writes to the source again");
	ok(FollowTest::poll($tgt, $db, "SELECT count(*) >= $now + $more FROM public.txn_counter", 180, $run),
		"$label: the target applies changes committed after it")
	  or diag("stderr so far:\n${ $run->{stderr} }");
	ok(FollowTest::running($run), "$label: start is still running");
}
applies_new_changes('before the faults', 300);

# B. the source stops mid-follow, past the stream's receive deadline
my $seen = length ${ $run->{stderr} };
FaultTest::freeze($src);
ok(FollowTest::poll($tgt, $db, 'SELECT true', 5), 'B. the source is stopped');
my $t0 = time;
my $said;
while (time < $t0 + 40)
{
	FollowTest::running($run);
	$said = substr(${ $run->{stderr} }, $seen);
	last if $said =~ /no message from the source/ && $said =~ /timed out after \d+ s waiting for the source/;
	usleep(200_000);
}
my $took = time - $t0;
like($said,
	qr/\[stream\] no message from the source for 8 s, not even a keepalive \(wal_sender_timeout 3000 ms plus 5000 ms\) \(host=127\.0\.0\.1 port=${\ $src->port} dbname=$db\)/,
	'B. the stream names the silence, the bound and the host');
like($said, qr/connection lost; reconnecting/, 'B. and reconnects');
like($said, qr/timed out after 10 s waiting for the source to answer a connection for replication/,
	'B. a reconnection attempt to the stopped source ends after connect_timeout');
FaultTest::thaw($src);
applies_new_changes('B. source stopped mid-follow', 300);

# C. the target stops mid-follow
my $seen_c = length ${ $run->{stderr} };
FaultTest::freeze($tgt);
pause_for(12);
ok(FollowTest::running($run), 'C. start waits while the target is stopped');
like(substr(${ $run->{stderr} }, $seen_c),
	qr/\[apply\] waiting for the target: nothing received for \d+ s, and a new connection got no answer within 3 s \(host=\S+ port=${\ $tgt->port}\)/,
	'C. the stall report names apply and the target');
FaultTest::thaw($tgt);
applies_new_changes('C. target stopped mid-follow', 300);

# D. the source stops, then dies
FaultTest::freeze($src);
pause_for(3);
FaultTest::kill_and_restart($src);
applies_new_changes('D. source stopped, then killed', 300);

# E. the target stops, then dies
FaultTest::freeze($tgt);
pause_for(3);
FaultTest::kill_and_restart($tgt);
applies_new_changes('E. target stopped, then killed', 300);

my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, flush => 1, run => $run),
	'the target caught up after the load stopped');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);
my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT after the faults: exit status 0') or diag($r->{stderr});
unlike($r->{stderr}, qr/AddressSanitizer|runtime error:|Segmentation/, 'no crash report');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);

done_testing();

# verify under faults (issue 15, src/WAITS.md): a target whose processes are
# stopped (SIGSTOP: its kernel still acknowledges TCP, so neither keepalives
# nor tcp_user_timeout end the wait) while verify's row comparison waits on
# it.  The comparison has no deadline (a digest of a big table is long), so
# verify rides through: after the stall reporter's silence
# (PGRELOCATE_TEST_STALL_MS, 60 s by default) it probes the target with a
# fresh connection, which a stopped postmaster never answers, and warns,
# naming the host, the port and the waiting context; while the server only
# runs a long statement (here: waits on a lock) the probe is answered and
# nothing is said.  After SIGCONT verify completes with MATCH.  Stopped
# again, Ctrl-C ends it at once.
#
# Then verify against a black-holed target after the copy: it ends within its
# connect timeout, the host named (070 covers the black hole before any
# state exists).
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FaultTest;
use FollowTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.t (id int PRIMARY KEY, v text);
INSERT INTO public.t SELECT i, md5(i::text) FROM generate_series(1, 400000) i;
CREATE TABLE public.log (v text);
ALTER TABLE public.log REPLICA IDENTITY FULL;
INSERT INTO public.log SELECT md5(i::text) FROM generate_series(1, 100) i;
});
my $run = FollowTest::start_bg($src, $tgt, $db);
END { FollowTest::stop_run($run) if $run && !$run->{result}; }
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');

# verify compares the big table first (one worker per side); the moment it
# starts comparing, a session asks for public.log on the target (no index,
# no constraint: a table of its own), so verify's comparison of its rows
# waits on that lock.  The lock is granted once verify's catalog
# transaction ends, or never: both keep the comparison waiting.  Then the
# target is stopped, until the stall report names it.  Returns verify's
# handle and the lock holder's.
my $t0;
sub stalled_verify
{
	my ($label) = @_;
	my $v = RelocateTest::start_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify',
		args    => [ '--jobs', 1 ],
		env     => { PGRELOCATE_TEST_STALL_MS => '2000' },
		timeout => 120);
	$t0 = time;
	while (time - $t0 < 60 && ${ $v->{stderr} } !~ /\[verify\] comparing \d+ tables/)
	{
		eval { $v->{h}->pump_nb };
		usleep(20_000);
	}
	my ($holder) = FaultTest::hold($tgt, $db,
		"BEGIN;\nLOCK TABLE public.log IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(600);\n");
	ok(RelocateTest::wait_until($tgt, $db,
		q{SELECT count(*) > 0 FROM pg_stat_activity
		  WHERE application_name = 'pgrelocate verify' AND wait_event_type = 'Lock'}, 't', 60),
		"$label: verify waits on a lock on the target") or diag(${ $v->{stderr} });

	# Waiting on a lock is not a stall: the probe is answered, nothing is said.
	$t0 = time;
	while (time - $t0 < 5) { eval { $v->{h}->pump_nb }; usleep(100_000); }
	unlike(${ $v->{stderr} }, qr/waiting for the target/, "$label: a long wait on a server that answers: no warning");

	FaultTest::freeze($tgt);
	$t0 = time;
	my $warning = qr/\[verify[^\]]*\] waiting for the target: nothing received for \d+ s, and a new connection got no answer within 3 s \(host=\S+ port=${\ $tgt->port}\)/;
	my $said = 0;
	while (time - $t0 < 30)
	{
		eval { $v->{h}->pump_nb };
		last if ($said = ${ $v->{stderr} } =~ $warning);
		usleep(100_000);
	}
	my $took = time - $t0;
	ok($said, "$label: the stopped target is reported: host, port and the waiting context")
	  or diag(${ $v->{stderr} });
	cmp_ok($took, '<', 15, sprintf("$label: within the silence and the probe (%.1f s)", $took));
	like(${ $v->{stderr} }, qr/HINT:\s+Check whether the server is stopped/, "$label: the hint says what to check");
	ok(FollowTest::running($run), "$label: start is still running");
	ok(kill(0, $v->{pid}), "$label: verify keeps waiting");
	return ($v, $holder);
}

my ($v, $holder) = stalled_verify('SIGCONT');
FaultTest::thaw($tgt);
FaultTest::release($tgt, $db, $holder);
my $r = RelocateTest::finish_copy($v);
is($r->{exit}, 0, 'verify completes after SIGCONT') or diag($r->{stderr});
like($r->{stdout}, qr/^result: MATCH$/m, 'verify: MATCH');

# Ctrl-C still ends a verify that waits on a stopped target (the second
# one at once, as everywhere).
($v, $holder) = stalled_verify('Ctrl-C');
kill 'INT', $v->{pid};
$t0 = time;
while (time - $t0 < 3 && $v->{h}->pumpable) { eval { $v->{h}->pump_nb }; usleep(100_000); }
kill 'INT', $v->{pid} if $v->{h}->pumpable;
$r = RelocateTest::finish_copy($v);
my $took = time - $t0;
ok($r->{exit} != 0 || $r->{signal} != 0, 'Ctrl-C ends verify while the target is stopped');
cmp_ok($took, '<', 10, sprintf('at once (%.1f s)', $took));
FaultTest::thaw($tgt);
FaultTest::release($tgt, $db, $holder);

# A black-holed target: verify ends within its connect timeout.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($hole_out, $hole_err) = ('', '');
my $hole = IPC::Run::start(
	[ 'perl', '-MIO::Socket::INET', '-e', <<'PERL', $port ],
$| = 1;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $ARGV[0],
	Listen => 64, ReuseAddr => 1) or die "listen: $!";
print "ready\n";
my @held;
while (my $c = $l->accept) { push @held, $c; }
PERL
	'>', \$hole_out, '2>', \$hole_err);
$hole->pump until $hole_out =~ /ready/;
for my $side ('source', 'target')
{
	my %c = FollowTest::conn($src, $tgt, $db);
	$c{$side} = "host=127.0.0.1 port=$port dbname=$db connect_timeout=3";
	$t0 = time;
	my $b = RelocateTest::run_copy(%c, command => 'verify', timeout => 60);
	$took = time - $t0;
	ok($b->{exit} > 0 && $b->{signal} == 0, "verify with a black-holed $side fails");
	like($b->{stderr}, qr/timed out after 3 s waiting for the $side to answer a connection \(host=127\.0\.0\.1 port=$port/,
		"verify with a black-holed $side: the message names the host and the wait");
	cmp_ok($took, '<', 15, sprintf("verify with a black-holed $side ends within its connect timeout (%.1f s)", $took));
}
$hole->kill_kill;

my $s = FollowTest::stop_run($run);
ok($s->{exit} == 0 || $s->{exit} == 130 || $s->{signal} == 0, 'start stops on SIGINT') or diag($s->{stderr});
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is(join(', ', FollowTest::leftovers($src, $tgt, $db)), '', 'nothing left behind');
done_testing();

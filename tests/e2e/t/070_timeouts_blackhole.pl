# Every wait ends (DESIGN invariant 12, issue 15): a server that accepts the
# TCP connection and never answers (a black-holed host, a stuck load
# balancer) as --source and as --target of copy, check, start, verify,
# status and cleanup.  Each command ends within its connect timeout, with a
# message naming the side, the host and port and what it waited for, and the
# hint of what to check; the default (10 s) applies when the connection
# string sets none, the user's connect_timeout when it does.  Nothing is
# left on the real server of the pair.  Then a lock held on the source makes
# check end after lock_timeout with the host named, instead of waiting.
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO public.accounts SELECT i, 100 FROM generate_series(1, 10) i;
});

# The black hole: accepts every connection, keeps it open, never writes.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($hole_out, $hole_err) = ('', '');
my $hole = IPC::Run::start(
	[
		'perl', '-MIO::Socket::INET', '-e', <<'PERL', $port
$| = 1;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $ARGV[0],
	Listen => 64, ReuseAddr => 1) or die "listen: $!";
print "ready\n";
my @held;
while (my $c = $l->accept) { push @held, $c; print "accepted\n"; }
PERL
	],
	'>', \$hole_out, '2>', \$hole_err);
$hole->pump until $hole_out =~ /ready/;

my $source = $src->connstr($db);
my $target = $tgt->connstr($db);
my $hole_uri = "host=127.0.0.1 port=$port dbname=$db";

sub accepted { $hole->pump_nb; return () = $hole_out =~ /accepted/g; }

# command, which side is the hole, the connect_timeout in the string (undef:
# our default of 10 s)
my @cases = (
	[ 'copy',    'source', undef ],
	[ 'copy',    'target', 3 ],
	[ 'check',   'source', 3 ],
	[ 'check',   'target', 3 ],
	[ 'start',   'source', 3 ],
	[ 'start',   'target', undef ],
	[ 'verify',  'source', 3 ],
	[ 'verify',  'target', 3 ],
	[ 'status',  'target', 3 ],
	[ 'cleanup', 'source', 3 ],
	[ 'cleanup', 'target', 3 ],
);
for my $c (@cases)
{
	my ($cmd, $side, $timeout) = @$c;
	my $hole_conn = $hole_uri . (defined $timeout ? " connect_timeout=$timeout" : '');
	my $wait = $timeout // 10;
	my $name = "$cmd with --$side a black hole" . (defined $timeout ? " (connect_timeout=$timeout)" : '');
	my $before = accepted();
	my $t0 = time;
	my $r = RelocateTest::run_copy(
		command => $cmd,
		($cmd eq 'status' ? () : (source => $side eq 'source' ? $hole_conn : $source)),
		target => $side eq 'target' ? $hole_conn : $target,
		timeout => 60);
	my $took = time - $t0;
	isnt($r->{exit}, 0, "$name: fails");
	isnt($r->{exit}, -1, "$name: ends by itself");
	ok($took >= $wait - 0.5 && $took < $wait + 8, "$name: ends after its timeout of $wait s (took ${\ sprintf '%.1f', $took} s)");
	cmp_ok(accepted(), '>', $before, "$name: it did reach the black hole");
	like($r->{stderr},
		qr/timed out after $wait s waiting for the $side to answer a connection[^\n]*\(host=127\.0\.0\.1 port=$port dbname=$db\)/,
		"$name: names the wait, the side and the host");
	like($r->{stderr}, qr/HINT:\s+Check that this host and port reach a running PostgreSQL server/,
		"$name: says what to check");
}
is(RelocateTest::query($tgt, $db, q{SELECT count(*) FROM pg_namespace WHERE nspname = 'pgrelocate'}),
	'0', 'no state schema was made on the target');
is(RelocateTest::query($src, $db, q{SELECT count(*) FROM pg_replication_slots}), '0', 'no slot on the source');
is(RelocateTest::query($src, $db, q{SELECT count(*) FROM pg_publication}), '0', 'no publication on the source');
is(RelocateTest::query($tgt, $db, q{SELECT count(*) FROM pg_tables WHERE schemaname = 'public'}), '0',
	'nothing was copied to the target');
$hole->kill_kill;

# A lock held by someone else on the source: check's size query (it takes
# an ACCESS SHARE lock on each table) ends after lock_timeout (10 s) and says
# where, instead of waiting; check then reports what it could not judge.
my $locker_in = "BEGIN;\nLOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n";
my ($locker_out, $locker_err) = ('', '');
my $locker = IPC::Run::start([ 'psql', '-XAtq', '-d', $source ],
	'<', \$locker_in, '>', \$locker_out, '2>', \$locker_err);
$locker->pump until $locker_out =~ /locked/;
my $t0 = time;
my $r = RelocateTest::run_copy(command => 'check', source => $source, target => $target, timeout => 60);
my $took = time - $t0;
like($r->{stdout}, qr/WARN\s+data\.size\s+could not be checked/,
	'check with a table locked on the source: the size check could not run, and says so');
ok($took >= 9.5 && $took < 25, sprintf('and ends after lock_timeout (took %.1f s)', $took));
like($r->{stderr}, qr/canceling statement due to lock timeout/, 'the server says a lock timeout ended it');
like($r->{stderr}, qr/Another session on host=\S+ port=${\ $src->port} holds a lock this query waited for/,
	'the hint names the host and what to look for');
$locker_in .= "COMMIT;\n";
$locker->finish;
$r = RelocateTest::run_copy(command => 'check', source => $source, target => $target, timeout => 60);
unlike($r->{stderr}, qr/lock timeout/, 'once the lock is gone, check runs through');

done_testing();

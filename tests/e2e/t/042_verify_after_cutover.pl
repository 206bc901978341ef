# pgrelocate verify after a cutover: the application now writes to the
# target and `start` follows it back to the source.  verify compares both at
# one target LSN (the reverse follower held, a temporary slot on the
# target), so the writes cause no false difference; a row only the source
# has is found; with start stopped, verify runs the reverse follower
# in-process and still matches.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, target_conf => 'max_replication_slots = 10');
FollowTest::setup_pgbench($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
my $load;
END
{
	FollowTest::load_stop($load) if $load && !$load->{stopped}++;
	FollowTest::stop_run($run) if $run && !$run->{result};
}
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');
RelocateTest::copy_ok('cutover', FollowTest::conn($src, $tgt, $db), command => 'cutover',
	args => [ '--pause-command', 'true', '--resume-command', 'true', '--switch-command', 'true' ]);
is(FollowTest::migration($tgt, $db)->{phase}, 'reverse', 'after the cutover: phase reverse');

# The application now writes to the target.
$load = FollowTest::load_start($tgt, $db, clients => 4, seconds => 3);
ok(FollowTest::wait_for_load($tgt, $db, 200, 60), 'the load writes to the target');

sub verify_json
{
	my (@args) = @_;
	my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify', args => [ '--json', '--jobs', 2, @args ]);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) } // {};
	return ($r, $j);
}

for my $i (1 .. 3)
{
	my ($r, $j) = verify_json();
	is($r->{exit}, 0, "reverse run $i: exit status 0") or diag($r->{stdout} . $r->{stderr});
	is($j->{row_differences_total}, 0, "reverse run $i: no row difference");
	like($j->{consistent_points}[0] // '', qr/^target LSN [0-9A-F]+\/[0-9A-F]+ .*reverse follower/,
		"reverse run $i: compared at one target LSN");
}

$src->safe_psql($db, "INSERT INTO public.pgbench_accounts (aid, bid, abalance, filler) VALUES (-1, 1, 0, 'source only')");
{
	my ($r, $j) = verify_json();
	is($r->{exit}, 3, 'a row only the source has: exit status 3');
	is_deeply([ map { "$_->{table} $_->{kind} " . JSON::PP->new->canonical->encode($_->{key}) } @{ $j->{row_differences} } ],
		[ 'pgbench_accounts missing {"aid":"-1"}' ], 'a row only the source has: exactly that row');
}
$src->safe_psql($db, 'DELETE FROM public.pgbench_accounts WHERE aid = -1');

my $stopped = FollowTest::stop_run($run);
is($stopped->{exit}, 0, 'start (reverse) stopped cleanly');
{
	my ($r, $j) = verify_json();
	is($r->{exit}, 0, 'no start running: exit status 0') or diag($r->{stdout} . $r->{stderr});
	like($r->{stderr}, qr/following changes in this process/, 'no start running: follows in-process');
	like($j->{consistent_points}[0] // '', qr/^target LSN /, 'no start running: at one target LSN');
}
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgrelocate_verify%'"),
	'0', 'no temporary slot left on the target');

FollowTest::load_stop($load);
$load->{stopped} = 1;
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'nothing left behind');
done_testing();

# pgrelocate verify while the application writes and `pgrelocate start`
# follows: every run compares both sides at one source LSN (sync point +
# temporary slot snapshot), so live writes cause no false difference, run
# after run, including pgbench_history (no key: compared as a multiset).
# A row changed on the target alone is still found, under the same load.
# With start stopped, verify follows in-process for the while and still
# matches; it leaves no slot, session or hold behind.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
FollowTest::setup_pgbench($src, $db, scale => 2);

my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
my $load;
END
{
	FollowTest::load_stop($load) if $load && !$load->{stopped}++;
	FollowTest::stop_run($run) if $run && !$run->{result};
}
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
$load = FollowTest::load_start($src, $db, clients => 4, seconds => 3);
ok(FollowTest::wait_for_load($src, $db, 200, 60), 'the load is writing');

sub verify_json
{
	my ($name, @args) = @_;
	my $r = RelocateTest::run_copy(
		FollowTest::conn($src, $tgt, $db),
		command => 'verify',
		args    => [ '--json', '--jobs', 2, @args ]);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) } // {};
	return ($r, $j);
}

sub rows_of
{
	my ($j, $table) = @_;
	my ($t) = grep { "$_->{schema}.$_->{table}" eq $table } @{ $j->{tables} // [] };
	return $t ? $t->{source_rows} : -1;
}

# 1. Several runs in a row under load: no difference, every time.
my $last_history = -1;
for my $i (1 .. 4)
{
	my ($r, $j) = verify_json("live $i");
	is($r->{exit}, 0, "live run $i: exit status 0")
	  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	is($j->{row_differences_total}, 0, "live run $i: no row difference");
	is($j->{schema_differences_total}, 0, "live run $i: no schema difference that counts");
	is(scalar @{ $j->{consistent_points} // [] }, 1, "live run $i: one consistent point");
	like($j->{consistent_points}[0] // '', qr/^source LSN [0-9A-F]+\/[0-9A-F]+ /,
		"live run $i: compared at one source LSN");
	my $h = rows_of($j, 'public.pgbench_history');
	cmp_ok($h, '>', $last_history, "live run $i: pgbench_history grew since the last run ($h rows)");
	$last_history = $h;
	my @lag = grep { $_->{kind} eq 'sequence' } @{ $j->{schema_differences} // [] };
	ok(!grep({ $_->{counts} } @lag), "live run $i: sequences behind are noted, not counted");
}

# One consistent point per table (--group-size 1): each group's snapshot
# is released before the next is taken; still no difference.
{
	my ($r, $j) = verify_json('point per table', '--group-size', '1');
	is($r->{exit}, 0, 'point per table: exit status 0') or diag($r->{stdout} . $r->{stderr});
	my @points = @{ $j->{consistent_points} // [] };
	is(scalar @points, scalar @{ $j->{tables} }, 'point per table: one point per table');
	is(scalar(grep { /^source LSN / } @points), scalar @points, 'point per table: each at a source LSN');
	my %lsn = map { /^source LSN (\S+)/ ? ($1 => 1) : () } @points;
	cmp_ok(scalar keys %lsn, '>', 1, 'point per table: the points are at different positions (the load went on)');
	is_deeply([ sort { $a <=> $b } map { $_->{consistent_point} } @{ $j->{tables} } ],
		[ 0 .. $#points ], 'point per table: each table names its own point');
}

# A long source transaction already running when verify starts: verify
# waits for it to end before holding the follower (creating its slot would
# wait for it anyway), so apply goes on meanwhile; then it compares.
{
	my $long = $src->background_psql($db);
	$long->query_safe('BEGIN; SELECT txid_current()');
	my $h = RelocateTest::start_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify', args => [ '--json', '--jobs', 2 ]);
	ok(RelocateTest::wait_until($src, $db,
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate verify'",
			't', 60),
		'long transaction: verify started');
	my $before = FollowTest::counter_rows($tgt, $db);
	ok(FollowTest::poll($tgt, $db, "SELECT count(*) > $before + 50 FROM public.txn_counter", 60),
		'long transaction: apply goes on while verify waits');
	is(RelocateTest::query($tgt, $db,
			"SELECT count(*) FROM pgrelocate.sync_points WHERE state IN ('requested', 'holding', 'advancing', 'reached')"),
		'0', 'long transaction: the follower is not held meanwhile');
	ok(FollowTest::running($h), 'long transaction: verify is still waiting');
	$long->query_safe('COMMIT');
	$long->quit;
	my $r = RelocateTest::finish_copy($h);
	is($r->{exit}, 0, 'long transaction: then verify compares and matches')
	  or diag($r->{stdout} . $r->{stderr});
}

# 2. A row that only the target has, under the same load: found, alone.
$tgt->safe_psql($db, "INSERT INTO public.pgbench_accounts (aid, bid, abalance, filler) VALUES (-1, 1, 0, 'target only')");
{
	my ($r, $j) = verify_json('corrupted under load');
	is($r->{exit}, 3, 'corrupted under load: exit status 3');
	is_deeply(
		[ map { "$_->{table} $_->{kind} " . JSON::PP->new->canonical->encode($_->{key}) } @{ $j->{row_differences} } ],
		[ 'pgbench_accounts extra {"aid":"-1"}' ],
		'corrupted under load: exactly the extra row');
}
$tgt->safe_psql($db, 'DELETE FROM public.pgbench_accounts WHERE aid = -1');

# 3. start stopped: verify follows in its own process for the while.
my $stopped = FollowTest::stop_run($run);
is($stopped->{exit}, 0, 'start stopped cleanly');
{
	my ($r, $j) = verify_json('no start running');
	is($r->{exit}, 0, 'no start running: exit status 0')
	  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	like($r->{stderr}, qr/no pgrelocate start runs: following changes in this process/,
		'no start running: says it follows in-process');
	is($j->{row_differences_total}, 0, 'no start running: no row difference');
	cmp_ok(rows_of($j, 'public.pgbench_history'), '>', $last_history, 'no start running: the load went on');
}
is(RelocateTest::query($src, $db,
		"SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgrelocate_verify%'"),
	'', 'no temporary slot left on the source');
ok(FollowTest::wait_for_no_tool_sessions($src, 30), 'no verify session left on the source');
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pgrelocate.sync_points WHERE state NOT IN ('released', 'expired', 'finished')"),
	'0', 'no sync point left holding');

# start resumes after verify's in-process follower; the load stops; both
# sides then agree exactly.
FollowTest::load_stop($load);
$load->{stopped} = 1;
$run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_caught_up($src, $tgt, $db), 'start resumed and caught up');
{
	my ($r, $j) = verify_json('after the load');
	is($r->{exit}, 0, 'after the load: exit status 0') or diag($r->{stdout} . $r->{stderr});
}
ok(FollowTest::compare_tables($src, $tgt, $db), 'tables equal by an independent comparison');
FollowTest::stop_run($run);
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'nothing left behind');

done_testing();

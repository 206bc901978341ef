# pgrelocate start under a pgbench load: copy, then follow, exactly once.
#
# pgbench (-c 4, the TPC-B script plus one row of a unique counter per
# transaction) writes to the source while start copies the database and
# goes on while it follows.  pgbench_history has no primary key, so start
# runs with --replica-identity-full.  After the load stops and the target
# caught up (origin progress past the source's WAL position, and the slot
# acknowledged it):
#   - every table equals the source row by row, schema too;
#   - the counter has no duplicate, no gap and nothing extra relative to the
#     source, and holds every transaction pgbench saw committed;
#   - changes were applied while the load ran (not only at the end);
# then SIGINT stops start with exit 0 and the slot inactive; cleanup removes
# the slot and publication (source), the origin, the publication and the
# pgrelocate schema (target), restores the replica identity it changed, and
# the target still equals the source, schema included.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
my $scale = 5;    # 500,000 accounts: the copy takes a few seconds

FollowTest::setup_pgbench($src, $db, scale => $scale, foreign_keys => 1);
my $identities_before = FollowTest::replica_identities($src, $db);
like($identities_before, qr/^public\.pgbench_history d$/m,
	'pgbench_history starts with the default replica identity (and has no key)');

# 1. load first, then start: the whole copy runs under the load
my $load = FollowTest::load_start($src, $db, scale => $scale, seconds => 3);
ok(FollowTest::wait_for_load($src, $db, 100, 60), 'the load writes to the source');
my $before_start = FollowTest::counter_rows($src, $db);
my $run = FollowTest::start_bg($src, $tgt, $db, args => [ '--replica-identity-full', '--jobs', 2 ]);

ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
my $at_follow = FollowTest::counter_rows($src, $db);
cmp_ok($at_follow, '>', $before_start + 200,
	'the load went on during the copy (200+ transactions between start and the follow phase)');

# 2. the load goes on during the follow; the target applies as it goes
ok(FollowTest::wait_for_load($src, $db, $at_follow + 2000, 120),
	'the load wrote 2000 more transactions during the follow');
ok(RelocateTest::wait_until($tgt, $db,
		"SELECT count(*) > $at_follow FROM public.txn_counter", 't', 60),
	'the target receives changes while the load runs');
my $stats = FollowTest::load_stop($load);
is($stats->{failed_runs}, 0, 'every pgbench run succeeded')
  or diag($stats->{output});

# 3. caught up: equal row by row, exactly once
my $x = FollowTest::wait_caught_up($src, $tgt, $db, flush => 1);
ok(defined $x, 'the target caught up (origin progress and the slot\'s confirmed_flush_lsn '
	  . 'past the source\'s position after the load)');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);

# 4. SIGINT: finishes the transaction at hand, exit 0
my $r = FollowTest::stop_run($run, 'INT');
is($r->{signal}, 0, 'start was not killed by the signal');
is($r->{exit}, 0, 'SIGINT in the follow phase: exit status 0')
  or diag("stderr:\n$r->{stderr}");
like($r->{stderr}, qr/\[follow\] streaming changes from/, 'start logged that it streams');
ok(FollowTest::wait_for_no_tool_sessions($src, 30), 'no pgrelocate session left on the source');
is(RelocateTest::query($src, $db, 'SELECT count(*) FROM pg_replication_slots WHERE NOT active'),
	'1', 'the slot stays, inactive, after the stop');
my $name = FollowTest::migration($tgt, $db)->{replication_name};
cmp_ok(FollowTest::origin_progress($tgt, $db, $name), 'ne', '0/0', 'the origin holds progress');
FollowTest::compare_tables($src, $tgt, $db);

# 4b. a backlog while start is stopped: one transaction of 100,000 rows and
# 2,000 small ones, then start again (over TCP, -v).  The stream reads the
# backlog in batches (SO_RCVLOWAT) and goes back to reading each change as
# it arrives once it caught up; the target still equals the source.
$src->safe_psql($db, 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) '
	  . 'SELECT g % 10 + 1, 1, g, g, now() FROM generate_series(1, 100000) g');
my $small = "$PostgreSQL::Test::Utils::tmp_check/020_small.sql";
PostgreSQL::Test::Utils::append_to_file($small,
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:client_id + 1, 1, 1, 1, now());\n");
$src->command_ok([ 'pgbench', '-n', '-c', 4, '-t', 500, '-f', $small, '-h', $src->host, '-p', $src->port, $db ],
	'2,000 small transactions while start is stopped');
$run = FollowTest::start_bg($src, $tgt, $db, args => [ '--replica-identity-full', '-v' ]);
$x = FollowTest::wait_caught_up($src, $tgt, $db, flush => 1);
ok(defined $x, 'the backlog made while start was stopped is applied');
FollowTest::compare_tables($src, $tgt, $db);
# idle windows after the catch-up switch the batching off again
RelocateTest::wait_until($src, $db, 'SELECT pg_sleep(0.3) IS NOT NULL', 't', 5);
$r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'the second run of start: exit 0 on SIGINT')
  or diag("stderr:\n$r->{stderr}");
like($r->{stderr}, qr/\[stream\] backlog: reading in batches.*\[stream\] reading as changes arrive/s,
	'the stream read the backlog in batches, then each change as it arrived');

# 5. cleanup
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [],
	'cleanup left no slot, publication, origin or pgrelocate schema on either side');
is(FollowTest::replica_identities($src, $db), $identities_before,
	'cleanup restored the replica identities of the source');
ok(FollowTest::wait_for_no_tool_sessions($src, 30) && FollowTest::wait_for_no_tool_sessions($tgt, 30),
	'no pgrelocate session left after cleanup');
FollowTest::compare_tables($src, $tgt, $db);

done_testing();

# Sync points: holding the follower at an exact source position.
#
# verify and cutover drive a running `pgrelocate start` through the table
# pgrelocate.sync_points on the target (src/replicate/syncpoint.h).  This test plays
# the caller's side of that protocol in SQL, under a pgbench load:
#   - a running follower holds the advisory lock callers look for;
#   - hold: the target stops changing while the source goes on;
#   - advance to X = the source's WAL insert position: the target then holds
#     exactly the transactions that committed before X: no fewer than the
#     source had committed before X was read, no more than it had after
#     (the insert position, not pg_current_wal_lsn(): the test clusters
#     run synchronous_commit = off, so a transaction can be committed and
#     visible before its commit record is written, past the write position);
#   - release: apply goes on and catches up;
#   - a caller that goes away: the hold expires and apply goes on;
#   - one live sync point at a time;
#   - finish: start exits 0 with everything up to the sync point applied,
#     and a later start resumes following.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
FollowTest::setup_pgbench($src, $db, scale => 1);

my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');
ok(RelocateTest::wait_until($tgt, $db,
		"SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted "
		  . "AND classid = 1886810732 AND objid = 1937337955", '1', 30),
	'the follower holds the advisory lock that tells callers it runs');

sub q_tgt { RelocateTest::query($tgt, $db, $_[0]) }
sub q_src { RelocateTest::query($src, $db, $_[0]) }

# the caller's side of the protocol
sub request
{
	my ($expire_ms) = @_;
	my $id = q_tgt("INSERT INTO pgrelocate.sync_points (expires_at) VALUES "
		  . "(clock_timestamp() + interval '$expire_ms ms') RETURNING id");
	q_tgt('NOTIFY pgrelocate_sync');
	return $id;
}

sub set_state
{
	my ($id, $state, $extra) = @_;
	$extra = $extra ? ", $extra" : '';
	q_tgt("UPDATE pgrelocate.sync_points SET state = '$state'$extra WHERE id = $id");
	q_tgt('NOTIFY pgrelocate_sync');
	return;
}

sub wait_state
{
	my ($id, $state, $timeout_s) = @_;
	return RelocateTest::wait_until($tgt, $db,
		"SELECT state FROM pgrelocate.sync_points WHERE id = $id", $state, $timeout_s // 30);
}

my $load = FollowTest::load_start($src, $db, clients => 4, seconds => 2);
ok(FollowTest::wait_for_load($src, $db, 300, 60), 'the load writes to the source');
ok(RelocateTest::wait_until($tgt, $db, 'SELECT count(*) > 100 FROM public.txn_counter', 't', 60),
	'the target applies the load');

# 1. hold: the target stops changing, the source does not
my $id = request(30000);
ok(wait_state($id, 'holding', 30), 'the follower holds at a transaction boundary');
my $held = FollowTest::counter_rows($tgt, $db);
my $src_then = FollowTest::counter_rows($src, $db);
usleep(1_500_000);
is(FollowTest::counter_rows($tgt, $db), $held, 'nothing is applied while held (1.5 s)');
cmp_ok(FollowTest::counter_rows($src, $db), '>', $src_then, 'while the source went on');
my $applied = q_tgt("SELECT applied_lsn FROM pgrelocate.sync_points WHERE id = $id");
is(q_tgt("SELECT '$applied'::pg_lsn <= remote_lsn FROM pg_catalog.pg_replication_origin_status"),
	't', 'the reported position is committed in the origin');

# 2. advance to X: exactly the transactions committed before X
my $before = FollowTest::counter_rows($src, $db);
my $x = q_src('SELECT pg_catalog.pg_current_wal_insert_lsn()');
my $after = FollowTest::counter_rows($src, $db);
set_state($id, 'advancing', "target_lsn = '$x'");
ok(wait_state($id, 'reached', 30), "the follower reached the sync point $x");
my $at_x = FollowTest::counter_rows($tgt, $db);
cmp_ok($at_x, '>=', $before, "the target has every transaction committed before X ($at_x >= $before)");
cmp_ok($at_x, '<=', $after, "and none committed after it ($at_x <= $after)");
cmp_ok($at_x, '>', $held, 'it applied the transactions between the hold and X');
is(q_tgt("SELECT applied_lsn <= '$x' FROM pgrelocate.sync_points WHERE id = $id"), 't',
	'its applied position is not past X');
usleep(1_000_000);
is(FollowTest::counter_rows($tgt, $db), $at_x, 'it stays at X until released');

# 3. release
set_state($id, 'released');
ok(RelocateTest::wait_until($tgt, $db,
		"SELECT count(*) > $after FROM public.txn_counter", 't', 30),
	'released: apply goes on past X') or do { FollowTest::running($run); diag(${ $run->{stderr} }); BAIL_OUT('stuck') };

# 4. one live sync point at a time
my $id2 = request(30000);
my ($rc, $out, $err) = $tgt->psql($db,
	"INSERT INTO pgrelocate.sync_points (expires_at) VALUES (clock_timestamp() + interval '1 min')");
isnt($rc, 0, 'a second live sync point is refused');
like($err, qr/sync_points_one_live/, '... by the one-live index');

# 5. a caller that goes away: its hold expires
ok(wait_state($id2, 'holding', 30), 'held again');
set_state($id2, 'released');
my $id3 = request(2000);
ok(wait_state($id3, 'expired', 30), 'a hold whose caller does not come back expires');
is(q_tgt("SELECT reached_at IS NOT NULL FROM pgrelocate.sync_points WHERE id = $id3"), 't',
	'... after the follower had held for it');
my $n = FollowTest::counter_rows($tgt, $db);
ok(RelocateTest::wait_until($tgt, $db, "SELECT count(*) > $n FROM public.txn_counter", 't', 30),
	'and apply went on by itself');

# 6. finish: start exits at the sync point, with everything before it applied
my $stats = FollowTest::load_stop($load);
is($stats->{failed_runs}, 0, 'every pgbench run succeeded');
my $id4 = request(30000);
ok(wait_state($id4, 'holding', 30), 'held for the finish');
my $end = q_src('SELECT pg_catalog.pg_current_wal_insert_lsn()');
set_state($id4, 'advancing', "target_lsn = '$end'");
ok(wait_state($id4, 'reached', 30), 'an idle source: reached thanks to the stream passing X');
set_state($id4, 'finish');
ok(wait_state($id4, 'finished', 30), 'the follower says it finished');
my $r = FollowTest::finish($run);
is($r->{exit}, 0, 'start exited 0 after the finish') or diag($r->{stderr});
like($r->{stderr}, qr/stopped for good/, 'and said why');
FollowTest::compare_tables($src, $tgt, $db);

# a later start resumes following
my $run2 = FollowTest::start_bg($src, $tgt, $db);
ok(RelocateTest::wait_until($tgt, $db,
		"SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted "
		  . "AND classid = 1886810732 AND objid = 1937337955", '1', 60),
	'a new start follows again');
$src->safe_psql($db, "UPDATE public.pgbench_accounts SET abalance = 4242 WHERE aid = 7");
ok(RelocateTest::wait_until($tgt, $db,
		'SELECT abalance FROM public.pgbench_accounts WHERE aid = 7', '4242', 30),
	'and applies new changes');
my $r2 = FollowTest::stop_run($run2);
is($r2->{exit}, 0, 'start stops on SIGINT with exit 0');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'nothing left behind');

done_testing();

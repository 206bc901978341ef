# Schema changes after a cutover (issue 17): the application now writes to
# the target, and its migration runs there while pgrelocate follows the
# target back to the old source.  The same stages as 100 (attach and detach
# a partition, a batched backfill, DDL and DML in one string, a rename of a
# written column, ADD VALUE, DROP COLUMN, a foreign key NOT VALID then
# VALIDATE), each under the load and followed by verify MATCH, now in the
# reverse direction; then a rollback loses nothing: every transaction the
# load committed on the target is on the old source exactly once, every
# table and the schema equal.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;
use DdlTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1,
	target_conf => 'max_replication_slots = 10');
FollowTest::setup_pgbench($src, $db, scale => 1);
DdlTest::setup($src, $db);
my @hooks = ('--pause-command', 'true', '--resume-command', 'true', '--switch-command', 'true');

my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::poll($tgt, $db,
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 180, $run),
	'start reached the follow phase');
RelocateTest::copy_ok('cutover', FollowTest::conn($src, $tgt, $db), command => 'cutover',
	args => \@hooks);
is(FollowTest::migration($tgt, $db)->{phase}, 'reverse', 'after the cutover: phase reverse');

my $load = FollowTest::load_start($tgt, $db, script => $DdlTest::LOAD_SCRIPT, clients => 3);
ok(FollowTest::wait_for_load($tgt, $db, FollowTest::counter_rows($tgt, $db) + 30, 60),
	'the load writes to the target');

# the old source has everything the target committed before a marker
my $caught_up = sub {
	my $id = FollowTest::marker($tgt, $db);
	return FollowTest::poll($src, $db,
		"SELECT count(*) > 0 FROM public.follow_marker WHERE id = $id", 120, $run);
};
DdlTest::run_stages(
	up        => $tgt,
	down      => $src,
	db        => $db,
	caught_up => $caught_up,
	verify    => sub { DdlTest::verify_match($src, $tgt, $db, shift) });

my $stats = FollowTest::load_stop($load);
ok($caught_up->(), 'the old source caught up with the load stopped');
RelocateTest::copy_ok('rollback', FollowTest::conn($src, $tgt, $db), command => 'rollback',
	args => \@hooks);
my $r = FollowTest::finish($run);
ok($r->{ok}, 'start ends by itself after the rollback') or diag($r->{stderr});
like($r->{stderr},
	qr/\[apply\] replaying ALTER TABLE at \S+ \(statement 1 of 4 in its query string\): ALTER TABLE public\.orders ADD COLUMN memo text\n/,
	'the reverse direction replayed one statement of the string that mixed DDL and DML');
ok(FollowTest::compare_tables($src, $tgt, $db),
	'after the rollback the old source equals the target, schema and rows');
FollowTest::counter_exact($tgt, $src, $db, $stats);

FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup left nothing behind');
done_testing();

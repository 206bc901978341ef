# Schema changes on the source under load (issue 17, acceptance): each
# stage runs against the source while pgbench writes to the tables it
# changes, then `pgrelocate verify` must say MATCH (rows and schema), and
# at the end the counter proves no transaction applied twice or lost.
#   1. ATTACH PARTITION of a published partitioned table (the load writes
#      through the root and into the attached table);
#   2. DETACH PARTITION: the detached table's later rows still follow
#      (it was published through its root: it must join the publication);
#   3. a new column backfilled in batches (UPDATE ... WHERE aid BETWEEN, one
#      transaction each);
#   4. one simple-query string mixing DDL and DML (ALTER; INSERT; UPDATE;
#      CREATE INDEX): the DDL is replayed statement by statement, the DML
#      comes through the stream, once; and a string with BEGIN; CREATE
#      TABLE; INSERT; COMMIT; INSERT (a table created and filled in one
#      transaction);
#   5. RENAME COLUMN of a column the load writes (positional INSERTs);
#   6. ALTER TYPE ... ADD VALUE, then rows with the new value;
#   7. DROP COLUMN;
#   8. a foreign key NOT VALID, then VALIDATE.
# Also: a string whose DDL cannot be told apart (a ROLLBACK inside) is
# refused with the statement named, and nothing of it reaches the target.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;
use DdlTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);

FollowTest::setup_pgbench($src, $db, scale => 1);
DdlTest::setup($src, $db);
my $load = FollowTest::load_start($src, $db, script => $DdlTest::LOAD_SCRIPT, clients => 3);
ok(FollowTest::wait_for_load($src, $db, 30, 60), 'the load writes to the source');
my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::poll($tgt, $db,
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 180, $run),
	'start reached the follow phase');

DdlTest::run_stages(
	up        => $src,
	down      => $tgt,
	db        => $db,
	caught_up => sub {
		defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120);
	},
	verify => sub { DdlTest::verify_match($src, $tgt, $db, shift) });

my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120),
	'caught up with the load stopped');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);

# a string whose statements cannot be matched to the captured commands
# (a ROLLBACK inside takes one back): refused, not guessed
DdlTest::run_sql($src, $db, 'ALTER TABLE public.orders ADD COLUMN a1 int; BEGIN; '
	  . 'ALTER TABLE public.orders ADD COLUMN a2 int; ROLLBACK; '
	  . 'ALTER TABLE public.orders ADD COLUMN a3 int');
my $r = FollowTest::finish($run);
isnt($r->{exit}, 0, 'start stops at a string it cannot split exactly');
like($r->{stderr},
	qr/\[apply\] schema change at [0-9A-F]+\/[0-9A-F]+ refused: ALTER TABLE came in a query string of 5 statements with a ROLLBACK: which statement ran it is not known\n.*DETAIL:  The command was: ALTER TABLE public\.orders ADD COLUMN a1 int; BEGIN; /s,
	'the error names the string and why');
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attname ~ '^a[123]\$'"),
	'0', 'nothing of the refused transaction reached the target');
like(RelocateTest::query($tgt, $db,
		"SELECT string_agg(message, E'\\n' ORDER BY id) FROM pgrelocate.events "
		  . "WHERE context = 'apply' AND message LIKE 'replayed %'"),
	qr/^replayed ALTER TABLE at [0-9A-F]+\/[0-9A-F]+ \(statement 1 of 4 in its query string\): ALTER TABLE public\.orders ADD COLUMN memo text$/m,
	'the event log names the statement of the string that was replayed');

my $st = RelocateTest::copy_ok('status', command => 'status', target => $tgt->connstr($db));
like($st->{stdout}, qr/^schema       12 schema changes replayed, 1 refused$/m,
	'status counts the schema changes replayed and the one refused');
$st = RelocateTest::copy_ok('status --json', command => 'status', target => $tgt->connstr($db),
	args => ['--json']);
is_deeply(JSON::PP->new->utf8->decode($st->{stdout})->{schema_changes},
	{ replayed => 12, refused => 1 }, 'status --json: the same counts');

FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup left nothing behind');
done_testing();

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

use IPC::Run ();
use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);

FollowTest::setup_pgbench($src, $db, scale => 1);
$src->safe_psql($db, <<'SQL');
CREATE TYPE public.mood AS ENUM ('ok', 'sad');
CREATE TABLE public.orders (id bigserial PRIMARY KEY, qty int, mood public.mood);
INSERT INTO public.orders (qty, mood) SELECT g, 'ok' FROM generate_series(1, 100) g;
CREATE TABLE public.readings (id int, k int, v int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE public.readings_a PARTITION OF public.readings FOR VALUES FROM (1) TO (101);
CREATE TABLE public.readings_b (id int, k int, v int, PRIMARY KEY (id, k));
INSERT INTO public.readings SELECT g, g % 100 + 1, 0 FROM generate_series(1, 1000) g;
INSERT INTO public.readings_b SELECT g, g % 100 + 101, 0 FROM generate_series(1001, 2000) g;
SQL

# the load writes every table a stage changes; its INSERT into orders is
# positional, so it goes on writing qty after the rename
my $script = <<'EOS';
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\set k random(1, 200)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO public.orders VALUES (nextval('public.orders_id_seq'), :delta, 'ok');
UPDATE public.readings SET v = v + 1 WHERE k = :k;
UPDATE public.readings_a SET v = v + 1 WHERE k = :k;
UPDATE public.readings_b SET v = v + 1 WHERE k = :k;
INSERT INTO txn_counter (n, client) VALUES (nextval('txn_counter_n_seq'), :client_id);
END;
EOS
my @loads;
my $load = FollowTest::load_start($src, $db, script => $script, clients => 3);
ok(FollowTest::wait_for_load($src, $db, 30, 60), 'the load writes to the source');
my $run = FollowTest::start_bg($src, $tgt, $db, args => ["--replica-identity-full"]);
ok(FollowTest::poll($tgt, $db,
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 180, $run),
	'start reached the follow phase');

# One statement string sent as one simple query (psql -c), as an
# application or a migration tool sends it.
sub source_sql
{
	my ($sql) = @_;
	for my $attempt (1 .. 10)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $src->host, '-p',
				$src->port, '-d', $db, '-c', $sql ], '>', \$out, '2>', \$err);
		return if $? == 0;
		die "psql failed: $err ($sql)" unless $err =~ /deadlock detected/ && $attempt < 10;
		note("deadlock with the load, again: $sql");
	}
}

sub verify_match
{
	my ($what) = @_;
	my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify', args => [ '--json', '--jobs', 2 ]);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) } // {};
	is($r->{exit}, 0, "$what: verify exits 0")
	  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	is($j->{row_differences_total}, 0, "$what: verify finds no row difference");
	is($j->{schema_differences_total}, 0, "$what: verify finds no schema difference");
}

my $stage = 0;
sub stage
{
	my ($what, @sql) = @_;
	$stage++;
	source_sql($_) for @sql;
	ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120),
		"stage $stage ($what): the target caught up");
	verify_match("stage $stage ($what)");
}

stage('attach a partition',
	'ALTER TABLE public.readings ATTACH PARTITION public.readings_b FOR VALUES FROM (101) TO (201)',
	'UPDATE public.readings SET v = v + 1000 WHERE k > 190');
stage('detach a partition',
	'ALTER TABLE public.readings DETACH PARTITION public.readings_a',
	'UPDATE public.readings_a SET v = -v WHERE k <= 10',
	'INSERT INTO public.readings_a VALUES (5001, 7, 0)');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.readings_a WHERE id = 5001'),
	'1', 'a row inserted into the detached partition reached the target');
stage('a column backfilled in batches',
	'ALTER TABLE public.pgbench_accounts ADD COLUMN score int',
	map { my $lo = $_ * 10000 + 1; 'UPDATE public.pgbench_accounts SET score = aid % 97 '
		  . "WHERE aid BETWEEN $lo AND " . ($lo + 9999) } 0 .. 9);
is(RelocateTest::query($tgt, $db, 'SELECT count(score) FROM public.pgbench_accounts'),
	'100000', 'every batch of the backfill is on the target');
stage('DDL and DML in one query string',
	"ALTER TABLE public.orders ADD COLUMN memo text; "
	  . "INSERT INTO public.orders (qty, mood, memo) VALUES (1, 'ok', 'multi'); "
	  . "UPDATE public.orders SET memo = 'm' || id WHERE id <= 50; "
	  . "CREATE INDEX orders_memo_idx ON public.orders (memo)",
	"BEGIN; CREATE TABLE public.audit (id int PRIMARY KEY, what text); "
	  . "INSERT INTO public.audit SELECT g, 'a' || g FROM generate_series(1, 50) g; COMMIT; "
	  . "INSERT INTO public.audit VALUES (51, 'later')");
is(RelocateTest::query($tgt, $db, "SELECT count(*) FROM public.orders WHERE memo = 'multi'"),
	'1', 'the INSERT of the string ran once on the target');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.audit'),
	'51', 'the table created in the string has its rows from the first insert');
stage('a column the load writes renamed',
	'ALTER TABLE public.orders RENAME COLUMN qty TO quantity');
stage('ALTER TYPE ... ADD VALUE, then the new value',
	"ALTER TYPE public.mood ADD VALUE 'happy'",
	"UPDATE public.orders SET mood = 'happy' WHERE id % 7 = 0");
stage('a column dropped', 'ALTER TABLE public.orders DROP COLUMN memo');
stage('a foreign key NOT VALID, then VALIDATE',
	'ALTER TABLE public.orders ADD COLUMN aid int',
	'UPDATE public.orders SET aid = id WHERE id <= 100',
	'ALTER TABLE public.orders ADD CONSTRAINT orders_aid_fk FOREIGN KEY (aid) '
	  . 'REFERENCES public.pgbench_accounts (aid) NOT VALID',
	'ALTER TABLE public.orders VALIDATE CONSTRAINT orders_aid_fk');
is(RelocateTest::query($tgt, $db,
		"SELECT convalidated FROM pg_constraint WHERE conname = 'orders_aid_fk'"),
	't', 'the foreign key is validated on the target');

my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120),
	'caught up with the load stopped');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);

# a string whose statements cannot be matched to the captured commands
# (a ROLLBACK inside takes one back): refused, not guessed
source_sql('ALTER TABLE public.orders ADD COLUMN a1 int; BEGIN; '
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

FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup left nothing behind');
done_testing();

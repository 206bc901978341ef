# Schema changes on the source while start follows (issue 17): captured by
# pgrelocate's event triggers, replayed on the target at their place in the
# stream, in the same target transaction as their source transaction's rows.
#
# pgbench (the TPC-B script plus a unique counter) writes all along while an
# application-style migration runs against the source, one statement at a
# time as an ORM sends them:
#   add a nullable column and write to it; add a column with a constant
#   default; CREATE INDEX CONCURRENTLY (replayed without CONCURRENTLY); a
#   foreign key NOT VALID, then VALIDATE; rename a column the workload
#   writes; create a table and insert into it in the same transaction (it
#   joins the publication there); ALTER TYPE ... ADD VALUE and a row with
#   the new value; rename a table; drop a column.
# start is killed with SIGKILL right after schema changes and started again:
# nothing is replayed twice (a second ADD COLUMN would fail) or lost.
# After each stage the target equals the source, schema and rows; the
# counter is exact.  Then:
#   - a volatile default (ADD COLUMN ... DEFAULT clock_timestamp()) stops
#     apply with the command named and the repair;
#   - cleanup leaves no event trigger, function or schema on the source;
#   - a source role that may not create event triggers: check says so
#     (WARN), start follows as before and stops at the first schema change
#     with the schema-drift error.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => [ $db, 'plain', 'rev' ], source_tcp => 1,
	target_conf => 'max_replication_slots = 10');

FollowTest::setup_pgbench($src, $db, scale => 1);
$src->safe_psql($db, <<'SQL');
CREATE TYPE public.mood AS ENUM ('ok', 'sad');
CREATE TABLE public.events (id int PRIMARY KEY, payload text, mood public.mood);
INSERT INTO public.events SELECT g, 'p' || g, 'ok' FROM generate_series(1, 100) g;
SQL

my $load = FollowTest::load_start($src, $db, seconds => 2);
ok(FollowTest::wait_for_load($src, $db, 50, 60), 'the load writes to the source');
my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
my $name = FollowTest::migration($tgt, $db)->{replication_name};
is(RelocateTest::query($src, $db,
		"SELECT string_agg(evtname || ' ' || evtevent, ',' ORDER BY evtname) FROM pg_event_trigger"),
	"${name}_ddl_drop sql_drop,${name}_ddl_end ddl_command_end,${name}_ddl_rewrite table_rewrite",
	'start installed the three capture triggers on the source');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM pg_event_trigger'),
	'0', 'the capture triggers were not copied to the target');

# A statement on the source as an application runs it: a deadlock with the
# load (a foreign key locks both tables) is retried.
sub source_sql
{
	my ($sql) = @_;
	for my $attempt (1 .. 10)
	{
		my $ok = eval { $src->safe_psql($db, $sql); 1 };
		return if $ok;
		die $@ unless $@ =~ /deadlock detected/ && $attempt < 10;
		note("deadlock with the load, again: $sql");
	}
}

# One stage: statements run one by one on the source, as an application's
# migration does, under the load; then wait until the target caught up.
my $stage = 0;
sub stage
{
	my ($what, @sql) = @_;
	$stage++;
	source_sql($_) for @sql;
	my $x = FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120);
	ok(defined $x, "stage $stage ($what): the target caught up");
	return $x;
}

sub compare
{
	my ($what) = @_;
	my $l = FollowTest::load_stop($load);
	my $x = FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120);
	ok(defined $x, "$what: caught up with the load stopped");
	FollowTest::compare_tables($src, $tgt, $db);
	$load = FollowTest::load_start($src, $db, seconds => 2);
	return $l;
}

my @stats;
stage('nullable column, written',
	'ALTER TABLE public.pgbench_accounts ADD COLUMN note text',
	"UPDATE public.pgbench_accounts SET note = 'n' || aid WHERE aid <= 500");
stage('column with a constant default',
	'ALTER TABLE public.pgbench_accounts ADD COLUMN tier int NOT NULL DEFAULT 7',
	'UPDATE public.pgbench_accounts SET tier = 8 WHERE aid BETWEEN 400 AND 600');
stage('CREATE INDEX CONCURRENTLY',
	'CREATE INDEX CONCURRENTLY accounts_note_idx ON public.pgbench_accounts (note)');
is(RelocateTest::query($tgt, $db,
		"SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.accounts_note_idx'::regclass"),
	't', 'the index built concurrently on the source exists, valid, on the target');
push @stats, compare('after columns and index');

# SIGKILL right after schema changes: the restart replays each once
source_sql('ALTER TABLE public.pgbench_history ADD CONSTRAINT history_tid_fk '
	  . 'FOREIGN KEY (tid) REFERENCES public.pgbench_tellers (tid) NOT VALID');
source_sql('ALTER TABLE public.pgbench_history VALIDATE CONSTRAINT history_tid_fk');
RelocateTest::wait_until($tgt, $db,
	"SELECT count(*) FROM pg_constraint WHERE conname = 'history_tid_fk'", '1', 60);
my $r = FollowTest::stop_run($run, 'KILL');
is($r->{signal}, 9, 'start killed with SIGKILL after the foreign key');
like($r->{stderr},
	qr/\[apply\] replaying CREATE INDEX at [0-9A-F]+\/[0-9A-F]+ without CONCURRENTLY: .*: CREATE INDEX accounts_note_idx ON public\.pgbench_accounts \(note\)\n/,
	'the concurrent index build was replayed, without CONCURRENTLY, and logged so');
$src->safe_psql($db, "ALTER TABLE public.events RENAME COLUMN payload TO body");
$src->safe_psql($db, "INSERT INTO public.events (id, body, mood) VALUES (101, 'renamed', 'sad')");
$run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
RelocateTest::wait_until($tgt, $db, 'SELECT count(*) FROM public.events WHERE id = 101', '1', 60);
$r = FollowTest::stop_run($run, 'KILL');
like($r->{stderr},
	qr/\[apply\] replaying ALTER TABLE at \S+: ALTER TABLE public\.events RENAME COLUMN payload TO body/,
	'the rename made while start was down was replayed by the next run');
$run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
stage('foreign key validated, a written column renamed (across SIGKILLs)',
	"UPDATE public.events SET body = body || '!' WHERE id <= 10");
is(RelocateTest::query($tgt, $db,
		"SELECT convalidated FROM pg_constraint WHERE conname = 'history_tid_fk'"),
	't', 'the foreign key is validated on the target');

stage('a table created and filled in one transaction',
	"BEGIN; CREATE TABLE public.audit (id int PRIMARY KEY, what text);\n"
	  . "INSERT INTO public.audit SELECT g, 'a' || g FROM generate_series(1, 50) g; COMMIT;",
	"INSERT INTO public.audit VALUES (51, 'later')");
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.audit'),
	'51', 'the new table\'s rows, from its first insert, are on the target');

stage('ALTER TYPE ... ADD VALUE, then the new value',
	"ALTER TYPE public.mood ADD VALUE 'happy'",
	"INSERT INTO public.events (id, body, mood) VALUES (102, 'new value', 'happy')");
# unqualified, under the session's search_path: replayed under the same
stage('a table renamed, a column dropped',
	"SET search_path = nowhere, public;\nALTER TABLE events RENAME TO happenings",
	"INSERT INTO public.happenings (id, body, mood) VALUES (103, 'after rename', 'ok')",
	'ALTER TABLE public.pgbench_accounts DROP COLUMN note');
push @stats, compare('after every stage');

# the counter: exactly once across the SIGKILLs and schema changes
push @stats, FollowTest::load_stop($load);
my $x = FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120);
ok(defined $x, 'caught up after the load');
FollowTest::compare_tables($src, $tgt, $db);
my $total = 0;
$total += $_->{processed} for @stats;
FollowTest::counter_exact($src, $tgt, $db, $total);

# a volatile default cannot be replayed exactly: apply stops and says so
$src->safe_psql($db,
	'ALTER TABLE public.happenings ADD COLUMN seen timestamptz DEFAULT clock_timestamp()');
$r = FollowTest::finish($run);
isnt($r->{exit}, 0, 'start stops at a volatile default');
unlike($r->{stderr}, qr/RENAME COLUMN payload|history_tid_fk/,
	'the run after the SIGKILLs replayed none of the commands applied before them');
like($r->{stderr}, qr/replaying ALTER TYPE at \S+: ALTER TYPE public\.mood ADD VALUE 'happy'/,
	'it replayed the later ones');
like($r->{stderr},
	qr/\[apply\] schema change at [0-9A-F]+\/[0-9A-F]+ refused: ALTER TABLE filled every row of the table with a volatile default or identity: the target would get other values\n.*DETAIL:  The command was: ALTER TABLE public\.happenings ADD COLUMN seen timestamptz DEFAULT clock_timestamp\(\)\n.*HINT:  Add the column without a default/s,
	'the error names the command and the repair');
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.happenings'::regclass AND attname = 'seen'"),
	'0', 'the refused command did not reach the target');

is(RelocateTest::query($tgt, $db,
		"SELECT string_agg(substr(message, 1, strpos(message, ' at ')), '|' ORDER BY id) "
		  . "FROM pgrelocate.events WHERE context = 'apply' AND message LIKE 'replayed %'"),
	join('|', map { "replayed $_ " } ('ALTER TABLE') x 2, 'CREATE INDEX', ('ALTER TABLE') x 3,
		'CREATE TABLE', 'ALTER TYPE', ('ALTER TABLE') x 2),
	'the event log holds each replayed command once, in order (committed with it)');

FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [],
	'cleanup left no event trigger, function, schema, slot, publication or origin');

# a source role that may not create event triggers: as before
$src->safe_psql('postgres', 'CREATE ROLE mover LOGIN REPLICATION NOSUPERUSER');
$tgt->safe_psql('postgres', 'CREATE ROLE mover');
$src->safe_psql('plain', <<'SQL');
GRANT CREATE ON DATABASE plain TO mover;
CREATE TABLE public.items (id int PRIMARY KEY, name text);
ALTER TABLE public.items OWNER TO mover;
INSERT INTO public.items SELECT g, 'i' || g FROM generate_series(1, 20) g;
SQL
my %plain = (
	source => 'host=127.0.0.1 port=' . $src->port . ' dbname=plain user=mover',
	target => $tgt->connstr('plain'));
$r = RelocateTest::run_copy(%plain, command => 'check');
like($r->{stdout},
	qr/WARN\s+source\.ddl_capture\b.*schema changes on the source are not captured: the source role may not create event triggers/,
	'check: a role that may not create event triggers gets no capture (WARN)');
$run = RelocateTest::start_copy(%plain, command => 'start', timeout => 180);
ok(FollowTest::poll($tgt, 'plain',
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 120, $run),
	'start follows without capture');
$src->safe_psql('plain', "INSERT INTO public.items VALUES (21, 'new')");
ok(RelocateTest::wait_until($tgt, 'plain', 'SELECT count(*) FROM public.items', '21', 60),
	'rows follow');
is(RelocateTest::query($src, 'plain', 'SELECT count(*) FROM pg_event_trigger'),
	'0', 'no event trigger on the source');
$src->safe_psql('plain', 'ALTER TABLE public.items ADD COLUMN price int');
$src->safe_psql('plain', "INSERT INTO public.items VALUES (22, 'priced', 5)");
$r = FollowTest::finish($run);
isnt($r->{exit}, 0, 'start stops at the first schema change');
like($r->{stderr},
	qr/\[apply\] column "price" of public\.items does not exist on the target/,
	'with the schema-drift error, as before');
like($r->{stderr}, qr/\[ddl\] schema changes on the source are not captured: the source role may not create event triggers/,
	'start said why schema changes are not captured');
# (as a superuser: a role without it may not drop the source's reverse origin)
FollowTest::cleanup_ok('no capture: cleanup', $src, $tgt, 'plain');

# after a cutover: schema changes on the new primary reach the old source
$src->safe_psql('rev', 'CREATE TABLE public.orders (id int PRIMARY KEY, qty int); '
	  . 'INSERT INTO public.orders SELECT g, g FROM generate_series(1, 10) g');
my %rev = FollowTest::conn($src, $tgt, 'rev');
$run = FollowTest::start_bg($src, $tgt, 'rev');
ok(FollowTest::wait_for_phase($tgt, 'rev', 'follow', 120), 'reverse case: start follows');
RelocateTest::copy_ok('reverse case: cutover', %rev, command => 'cutover',
	args => [ '--pause-command', 'true', '--resume-command', 'true', '--switch-command', 'true' ]);
is(FollowTest::migration($tgt, 'rev')->{phase}, 'reverse', 'reverse case: phase reverse');
like(RelocateTest::query($tgt, 'rev', 'SELECT string_agg(evtname, \',\' ORDER BY evtname) FROM pg_event_trigger'),
	qr/^pgrelocate_[0-9a-f]{8}_reverse_ddl_drop,pgrelocate_[0-9a-f]{8}_reverse_ddl_end,pgrelocate_[0-9a-f]{8}_reverse_ddl_rewrite$/,
	'the cutover installed the capture on the new primary');
$tgt->safe_psql('rev', 'ALTER TABLE public.orders ADD COLUMN note text');
$tgt->safe_psql('rev', "INSERT INTO public.orders VALUES (11, 1, 'after the switch')");
ok(FollowTest::poll($src, 'rev',
		"SELECT coalesce((SELECT note = 'after the switch' FROM public.orders WHERE id = 11), false)",
		60, $run),
	'a column added on the new primary, and a row using it, reach the old source');
$r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'reverse case: start stops on SIGINT') or diag($r->{stderr});
FollowTest::compare_tables($src, $tgt, 'rev');
FollowTest::cleanup_ok('reverse case: cleanup', $src, $tgt, 'rev');
is_deeply([ FollowTest::leftovers($src, $tgt, 'rev') ], [],
	'reverse case: cleanup left no event trigger on either side');

done_testing();

# Schema-change capture with --tables (issue 17): a migration of part of a
# database captures schema changes too.  A table created on the source
# joins the publication only when its name matches the migration's
# patterns; a command on tables left out (ALTER, CREATE INDEX, DROP, a new
# table that does not match) stays on the source: apply leaves it and goes
# on.  Commands on the chosen tables are replayed as without --tables.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
FollowTest::setup_pgbench($src, $db, scale => 1);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.orders (id int PRIMARY KEY, qty int);
INSERT INTO public.orders SELECT g, g FROM generate_series(1, 100) g;
CREATE TABLE public.other (id int PRIMARY KEY, name text);
INSERT INTO public.other SELECT g, 'o' || g FROM generate_series(1, 100) g;
SQL
my $tables = 'public.order*,public.pgbench_*,public.txn_counter,public.follow_marker';
my %conn = FollowTest::conn($src, $tgt, $db);

my $r = RelocateTest::run_copy(%conn, command => 'check', args => [ '--tables', $tables ]);
like($r->{stdout}, qr/PASS\s+source\.ddl_capture\b/,
	'check: a migration with --tables gets schema-change capture');

my $load = FollowTest::load_start($src, $db, clients => 2);
ok(FollowTest::wait_for_load($src, $db, 30, 60), 'the load writes to the source');
my $run = FollowTest::start_bg($src, $tgt, $db,
	args => [ '--replica-identity-full', '--tables', $tables ]);
ok(FollowTest::poll($tgt, $db,
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 180, $run),
	'start --tables follows');
is(RelocateTest::query($tgt, $db, "SELECT to_regclass('public.other') IS NULL"), 't',
	'the table left out was not copied');

for my $sql (
	# matches the patterns: joins the publication, its rows follow
	"BEGIN; CREATE TABLE public.order_notes (id int PRIMARY KEY, note text); "
	  . "INSERT INTO public.order_notes SELECT g, 'n' || g FROM generate_series(1, 20) g; COMMIT",
	# does not match: stays on the source, with every command on it
	"BEGIN; CREATE TABLE public.audit_log (id int PRIMARY KEY, what text); "
	  . "INSERT INTO public.audit_log VALUES (1, 'x'); COMMIT",
	'ALTER TABLE public.audit_log ADD COLUMN at int',
	'ALTER TABLE public.other ADD COLUMN flag boolean',
	'CREATE INDEX other_flag_idx ON public.other (flag)',
	"UPDATE public.other SET flag = true WHERE id <= 10",
	'DROP TABLE public.audit_log',
	# chosen tables: replayed
	'ALTER TABLE public.orders ADD COLUMN note text',
	"UPDATE public.orders SET note = 'n' WHERE id <= 10",
	"INSERT INTO public.order_notes VALUES (21, 'later')")
{
	$src->safe_psql($db, $sql);
}
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120),
	'the target caught up: apply went past the commands on tables left out');
is(RelocateTest::query($src, $db,
		"SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables "
		  . "WHERE tablename IN ('order_notes', 'audit_log', 'other')"),
	'order_notes', 'only the new table that matches joined the publication');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.order_notes'), '21',
	'the matching new table and its rows, from the first insert, are on the target');
is(RelocateTest::query($tgt, $db,
		"SELECT to_regclass('public.audit_log') IS NULL AND to_regclass('public.other') IS NULL"),
	't', 'the tables left out are not on the target');
is(RelocateTest::query($tgt, $db, "SELECT count(*) FROM public.orders WHERE note = 'n'"), '10',
	'a column added to a chosen table was replayed, with its rows');
is(RelocateTest::query($tgt, $db,
		"SELECT string_agg(split_part(message, ' at ', 1), ',' ORDER BY id) FROM pgrelocate.events "
		  . "WHERE context = 'apply' AND message LIKE 'replayed %'"),
	'replayed CREATE TABLE,replayed ALTER TABLE',
	'only the commands on chosen tables were replayed');

my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120),
	'caught up with the load stopped');
FollowTest::counter_exact($src, $tgt, $db, $stats);
for my $t (qw(orders order_notes pgbench_accounts pgbench_history))
{
	my $sql = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM public.$t t";
	is(RelocateTest::query($tgt, $db, $sql), RelocateTest::query($src, $db, $sql),
		"rows of public.$t equal");
}
$r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'start stops on SIGINT') or diag($r->{stderr});
like($r->{stderr},
	qr/\[apply\] schema change at \S+ left on the source: it touches only tables outside the migration \(--tables\): ALTER TABLE public\.other ADD COLUMN flag boolean\n/,
	'apply says which commands it left on the source');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup left nothing behind');
done_testing();

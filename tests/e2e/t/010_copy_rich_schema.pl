# pgrelocate copy of the rich schema (RelocateTest::load_rich_schema) with 16
# jobs and 1MB chunks (16, so that inventory.big costs more than one job's
# share of the copy, which the 20 MiB TOASTed blob swells, and is split):
# the target then holds the same schema, rows,
# sequences and large objects as the source; statistics are in place; the
# big table was copied in several chunks; the source is left with no
# session, slot or held xmin.  Ends by proving the comparison itself catches
# one changed value of each kind.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my $db = 'app ü';    # a database name that needs quoting in a conninfo
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
RelocateTest::load_rich_schema($src, $db);
my $q_src = sub { RelocateTest::query($src, $db, shift) };
my $q_tgt = sub { RelocateTest::query($tgt, $db, shift) };

cmp_ok($q_src->("SELECT pg_table_size('inventory.big')"),
	'>', 4 * 1024 * 1024, 'source: inventory.big is bigger than 4 chunks of 1MB');

my $r = RelocateTest::copy_ok(
	'copy --jobs 16 --split-larger-than 1MB',
	source => $src->connstr($db),
	target => $tgt->connstr($db),
	args   => [ '--jobs', '16', '--split-larger-than', '1MB' ]);
if (!$r->{ok})
{
	done_testing();
	exit 0;
}

my (undef, undef, $tgt_state) = RelocateTest::compare_databases($src, $tgt, $db);

# The source is left as it was: no session, no slot, nothing holding xmin.
ok(RelocateTest::wait_for_no_sessions($src, 30),
	'source: no client session left after the tool exited');
is(RelocateTest::query($src, 'postgres', $RelocateTest::HELD_XMIN_SQL),
	'0', 'source: no backend holds back the xmin horizon');
is(RelocateTest::query($src, 'postgres', 'SELECT count(*) FROM pg_replication_slots'),
	'0', 'source: no replication slot');
is(RelocateTest::query($src, 'postgres', "SELECT count(*) FROM pg_prepared_xacts"),
	'0', 'source: no prepared transaction');
is($q_src->("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgrelocate'"),
	'0', 'source: no pgrelocate schema');

# The big table was copied in several chunks, all done.
my $chunks = eval { $q_tgt->(<<'SQL') } // "0 0 ($@)";
SELECT count(*) || ' ' || count(*) FILTER (WHERE c.state = 'done')
FROM pgrelocate.chunks AS c JOIN pgrelocate.tables AS t USING (table_no)
WHERE t.schema_name = 'inventory' AND t.table_name = 'big'
SQL
my ($nchunks, $ndone) = split / /, $chunks;
cmp_ok($nchunks, '>', 1, "target: inventory.big was copied in several chunks ($nchunks)");
is($ndone, $nchunks, 'target: every chunk of inventory.big is done');
is(eval { $q_tgt->("SELECT count(*) FROM pgrelocate.chunks WHERE state <> 'done'") } // $@,
	'0', 'target: no chunk left undone');

# Planner statistics: every table, partition, partitioned table and
# materialized view (all hold rows) has pg_statistic rows.  Autovacuum is
# off, so only the tool's ANALYZE can have made them.
is( $q_tgt->(<<'SQL'),
SELECT coalesce(string_agg(name, ', ' ORDER BY name), '') FROM (
SELECT format('%I.%I', n.nspname, c.relname) AS name
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')
  AND n.nspname !~ '^pg_toast'
  AND NOT EXISTS (SELECT 1 FROM pg_statistic AS s WHERE s.starelid = c.oid)) AS missing
SQL
	'', 'target: planner statistics (pg_statistic) for every table');
my $big_rows = $q_src->('SELECT count(*) FROM ONLY inventory.big');
my $reltuples = $q_tgt->("SELECT reltuples::bigint FROM pg_class WHERE oid = 'inventory.big'::regclass");
ok($reltuples > 0.9 * $big_rows && $reltuples < 1.1 * $big_rows,
	"target: reltuples of inventory.big ($reltuples) near its row count ($big_rows)");
is( $q_tgt->(<<'SQL'),
SELECT count(*) FROM pg_statistic_ext AS e
WHERE NOT EXISTS (SELECT 1 FROM pg_statistic_ext_data AS d WHERE d.stxoid = e.oid)
SQL
	'0', 'target: every extended statistics object has been built');

# Sequences and identities at the source's values.
is($q_tgt->('SELECT last_value || \' \' || is_called FROM public.customers_id_seq'),
	'5000000 true', 'target: identity sequence of public.customers at 5000000');
is($q_tgt->('SELECT last_value || \' \' || is_called FROM inventory.orders_id_seq'),
	'123456789 true', 'target: bigserial sequence of inventory.orders at 123456789');
is($q_tgt->('SELECT last_value || \' \' || is_called FROM public.invoice_no'),
	'987654321 true', 'target: public.invoice_no at 987654321');
is($q_tgt->('SELECT last_value || \' \' || is_called FROM inventory.reset_seq'),
	'777 false', 'target: inventory.reset_seq at 777 with is_called false');
is($q_tgt->('SELECT last_value || \' \' || is_called FROM inventory.never_used'),
	'42 false', 'target: inventory.never_used never called');

# The generated column is a generated column on the target too, and holds
# qty * price in every row.
my $items = 'public."Order ""Items"" ü"';
is( $q_tgt->(
		"SELECT attgenerated FROM pg_attribute WHERE attrelid = '$items'::regclass AND attname = 'total'"),
	's', 'target: total is a stored generated column');
is($q_tgt->("SELECT count(*) || ' ' || count(*) FILTER (WHERE total = qty * price) FROM $items"),
	'9000 9000', 'target: total = qty * price in every row');

# Triggers exist and are enabled; they did not fire during the copy (the
# audit table has exactly the source's rows, checked above).
is( $q_tgt->(
		"SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'inventory.orders'::regclass AND NOT tgisinternal"),
	'orders_audit:O,orders_mark:O', 'target: triggers of inventory.orders enabled');
# Constraints are valid where the source's are, NOT VALID where they were.
is( $q_tgt->(<<'SQL'),
SELECT string_agg(c, ', ' ORDER BY c) FROM (
  SELECT conrelid::regclass || ' ' || conname || ' ' || convalidated AS c FROM pg_constraint
  WHERE connamespace IN ('public'::regnamespace, 'inventory'::regnamespace)) AS s
SQL
	$q_src->(<<'SQL'), 'target: constraints and their validity as on the source');
SELECT string_agg(c, ', ' ORDER BY c) FROM (
  SELECT conrelid::regclass || ' ' || conname || ' ' || convalidated AS c FROM pg_constraint
  WHERE connamespace IN ('public'::regnamespace, 'inventory'::regnamespace)) AS s
SQL
is($q_tgt->("SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready"),
	'0', 'target: every index valid and ready');

# The comparison itself must fail when one value differs.  Change one
# thing of each kind on the target and check that each is reported.
{
	my $before = $tgt_state;
	$q_tgt->(<<'SQL');
UPDATE public.floats SET f8 = 0 WHERE label = '-0';
DELETE FROM public.no_pk WHERE ctid = (SELECT min(ctid) FROM public.no_pk WHERE a = 1);
UPDATE public.blobs SET data = set_byte(data, 10000000, (get_byte(data, 10000000) + 1) % 256) WHERE id = 6;
SELECT setval('inventory.reset_seq', 777, true);
SELECT lo_put(100003, 1000000, CASE WHEN lo_get(100003, 1000000, 1) = '\x01' THEN '\x02' ELSE '\x01' END::bytea);
COMMENT ON TABLE public.t IS 'changed';
SQL
	my $after = RelocateTest::database_state($tgt, $db);
	my @diff = RelocateTest::state_differences($before, $after);
	is_deeply(
		\@diff,
		[
			'rows of public.blobs', 'rows of public.floats',
			'rows of public.no_pk', 'sequence inventory.reset_seq',
			'large objects', 'schema'
		],
		'comparison catches -0 vs 0, one duplicate less, one byte in 20 MiB, is_called, one LO byte, a comment'
	) or diag(explain \@diff);
	like(RelocateTest::row_differences($src, $db, $tgt, $db, 'public.floats'),
		qr/only on source \(x1\): "\(4,-0,-0,-0\)".*only on target \(x1\): "\(4,-0,0,-0\)"/s,
		'row_differences shows the changed float row on each side');
	like(RelocateTest::row_differences($src, $db, $tgt, $db, 'public.no_pk'),
		qr/only on source \(x1\): "\(1,dup,1\.5/, 'row_differences counts duplicates');
}

done_testing();

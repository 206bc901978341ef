# Whole-table chunks are loaded with TRUNCATE ONLY and COPY FREEZE in the
# transaction that marks them done (copy.h); ranges of a split table are not.
#
# A. copy --jobs 2 --split-larger-than 1MB: a table above the split size but
#    within one job's share of the whole copy stays one chunk; it, a
#    TOASTed table, an inheritance parent and its child (TRUNCATE ONLY of the
#    parent leaves the child's rows), two partitions and a table an FK
#    points to (the FK comes after the data) end equal row by row and every
#    page all-frozen (pg_visibility), no tuple unfrozen; the split table's
#    pages are not, which shows the check can fail.
#    The copy sessions compress TOAST values with lz4.
# B. kill -9 in the middle of a whole-table COPY FREEZE, stray rows put in
#    that table, --resume: the retried chunk truncates again, and the
#    target ends equal row by row and frozen.
# C. The copy sessions commit with synchronous_commit off: the target
#    killed (SIGKILL of every process) and started again just after a chunk
#    committed may lose that commit, rows and done mark together; the run
#    stops, --resume copies whatever is pending, and the target ends equal
#    row by row and frozen.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FaultTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => [ $db, 'app2', 'app3' ]);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.big (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO public.big SELECT i, md5(i::text) || md5((-i)::text) FROM generate_series(1, 800000) AS i;
CREATE TABLE public.whole (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO public.whole SELECT i, md5(i::text) FROM generate_series(1, 400000) AS i;
CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO public.docs
  SELECT d, string_agg(md5(d || '/' || k), '' ORDER BY k)
  FROM generate_series(1, 200) AS d, generate_series(1, 200) AS k GROUP BY d;
CREATE TABLE public.notes (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO public.notes SELECT i, repeat('note ' || i || ' ', 2000) FROM generate_series(1, 100) AS i;
CREATE TABLE public.parent (id int NOT NULL, note text);
CREATE TABLE public.child (extra int) INHERITS (public.parent);
INSERT INTO public.parent SELECT i, 'p' || i FROM generate_series(1, 3000) AS i;
INSERT INTO public.child SELECT i, 'c' || i, i * 2 FROM generate_series(1, 4000) AS i;
CREATE TABLE public.measure (at date NOT NULL, n int) PARTITION BY RANGE (at);
CREATE TABLE public.measure_2023 PARTITION OF public.measure FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.measure_2024 PARTITION OF public.measure FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO public.measure SELECT date '2023-01-01' + i % 700, i FROM generate_series(1, 20000) AS i;
CREATE TABLE public.orders (id int PRIMARY KEY, whole_id int NOT NULL REFERENCES public.whole);
INSERT INTO public.orders SELECT i, 1 + i % 400000 FROM generate_series(1, 20000) AS i;
SQL

my @frozen_tables = qw(whole docs notes parent child measure_2023 measure_2024 orders);

# Per table: "chunks pages all_frozen unfrozen_tuples" on the target.
sub visibility
{
	my ($tgt_db, @tables) = @_;
	$tgt->safe_psql($tgt_db, 'CREATE EXTENSION IF NOT EXISTS pg_visibility');
	my %out;
	for my $t (@tables)
	{
		my $chunks = RelocateTest::query($tgt, $tgt_db,
			"SELECT count(*) FROM pgrelocate.chunks JOIN pgrelocate.tables USING (table_no) "
			  . "WHERE schema_name = 'public' AND table_name = '$t'");
		$out{$t} = $chunks . ' ' . RelocateTest::query($tgt, $tgt_db, <<"SQL");
SELECT pg_relation_size('public.$t') / current_setting('block_size')::int || ' ' || s.all_frozen
       || ' ' || (SELECT count(*) FROM pg_check_frozen('public.$t'))
FROM pg_visibility_map_summary('public.$t') AS s
SQL
	}
	return \%out;
}

# Every page of each table all-frozen, no unfrozen tuple, one chunk.
sub assert_frozen
{
	my ($label, $vis) = @_;
	for my $t (@frozen_tables)
	{
		my ($chunks, $pages, $frozen, $unfrozen) = split / /, $vis->{$t};
		ok($chunks == 1 && $pages > 0 && $frozen == $pages && $unfrozen == 0,
			"$label: $t was one chunk and is frozen: every page all-frozen, no tuple unfrozen")
		  or diag("$t: $vis->{$t} (chunks pages all_frozen unfrozen)");
	}
}

# --- A. one run --------------------------------------------------------
{
	RelocateTest::copy_ok(
		'A: copy --jobs 2 --split-larger-than 1MB',
		source => $src->connstr($db),
		target => $tgt->connstr($db),
		args   => [ '--jobs', '2', '--split-larger-than', '1MB' ]);
	RelocateTest::compare_databases($src, $tgt, $db);
	my $vis = visibility($db, @frozen_tables, 'big');
	assert_frozen('A', $vis);
	my ($chunks, $pages, $frozen) = split / /, $vis->{big};
	ok($chunks > 1 && $pages > 0 && $frozen == 0,
		'A: big, above one job\'s share, was copied in ranges and is not frozen')
	  or diag("big: $vis->{big} (chunks pages all_frozen unfrozen)");
	is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM ONLY public.parent'),
		'3000', 'A: TRUNCATE ONLY of the parent left the rows of its child');
	# the copy sessions' default_toast_compression: the target compresses
	# every value again, with lz4 (the source's server default is pglz)
	my $methods = q{SELECT string_agg(DISTINCT coalesce(pg_column_compression(body), 'none'), ',')
	                FROM public.notes};
	is(RelocateTest::query($src, $db, $methods), 'pglz', q{A: the source's notes are pglz-compressed});
	is(RelocateTest::query($tgt, $db, $methods), 'lz4', 'A: the copied notes are lz4-compressed');
}

# --- B. kill -9 inside a COPY FREEZE, stray rows, --resume ---------------
{
	my %conn = (source => $src->connstr($db), target => $tgt->connstr('app2'));
	my $run = RelocateTest::start_copy(%conn, args => [ '--jobs', '1' ]);
	ok( RelocateTest::wait_until($tgt, 'app2', <<'SQL', 't', 120),
SELECT EXISTS (SELECT 1 FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)
               WHERE p.relid = 'public.whole'::regclass AND p.tuples_processed > 1000
                 AND a.query LIKE '%FREEZE%')
SQL
		'B: the whole-table COPY FREEZE of public.whole runs');
	kill 'KILL', $run->{pid};
	my $r = RelocateTest::finish_copy($run);
	is($r->{signal}, 9, 'B: pgrelocate was killed by SIGKILL inside the COPY');
	ok( RelocateTest::wait_until($tgt, 'postgres', <<'SQL', '0', 60),
SELECT count(*) FROM pg_stat_activity
WHERE datname = 'app2' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
SQL
		'B: the killed COPY rolled back');
	is( RelocateTest::query($tgt, 'app2', <<'SQL'),
SELECT c.state || ' ' || (SELECT count(*) FROM public.whole)
FROM pgrelocate.chunks AS c JOIN pgrelocate.tables AS t USING (table_no)
WHERE t.table_name = 'whole'
SQL
		'pending 0', 'B: the chunk of public.whole is pending and none of its rows is in');
	# rows the source never had: the retried chunk must not keep them
	$tgt->safe_psql('app2',
		"INSERT INTO public.whole SELECT -i, 'stray' FROM generate_series(1, 50) AS i");

	RelocateTest::copy_ok('B: copy --resume', %conn, args => [ '--jobs', '1', '--resume' ]);
	RelocateTest::compare_databases($src, $tgt, $db, 'app2');
	assert_frozen('B', visibility('app2', @frozen_tables));
}

# --- C. the target killed just after a chunk commits -------------------
{
	my %conn = (source => $src->connstr($db), target => $tgt->connstr('app3'));
	my $run = RelocateTest::start_copy(%conn, args => [ '--jobs', '1' ]);
	ok( RelocateTest::wait_until($tgt, 'app3',
			q{SELECT count(*) > 0 FROM pgrelocate.chunks WHERE state = 'done'}, 't', 120),
		'C: a chunk is done');
	FaultTest::kill_and_restart($tgt);
	my $r = RelocateTest::finish_copy($run);
	ok(!$r->{ok}, 'C: the run stopped when the target went away')
	  or diag("exit $r->{exit}\nstderr:\n$r->{stderr}");
	note('C: chunks done after the restart: '
		  . RelocateTest::query($tgt, 'app3', q{SELECT count(*) FROM pgrelocate.chunks WHERE state = 'done'}));
	RelocateTest::copy_ok('C: copy --resume', %conn, args => [ '--jobs', '1', '--resume' ]);
	RelocateTest::compare_databases($src, $tgt, $db, 'app3');
	is(RelocateTest::query($tgt, 'app3', q{SELECT count(*) FROM pgrelocate.chunks WHERE state <> 'done'}),
		'0', 'C: every chunk done');
	assert_frozen('C', visibility('app3', @frozen_tables));
}

done_testing();

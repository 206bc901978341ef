# Materialized views (issue 13, item 9): the target refreshes them from the
# copied rows (as pg_restore does), so a view that was stale on the source
# differs after the copy.  check lists every one; verify compares each view
# populated on both sides as its own category: a stale one is named with
# its rows, not counted in the result (MATCH), a fresh one matches, an
# unpopulated one is not compared.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.sales (id int PRIMARY KEY, region text NOT NULL, amount numeric NOT NULL);
INSERT INTO public.sales SELECT i, 'r' || (i % 3), i FROM generate_series(1, 300) AS i;
CREATE MATERIALIZED VIEW public.mv_fresh AS SELECT region, sum(amount) AS total FROM public.sales GROUP BY region;
CREATE MATERIALIZED VIEW public.mv_stale AS SELECT region, count(*) AS n FROM public.sales GROUP BY region;
CREATE MATERIALIZED VIEW public.mv_empty AS SELECT id FROM public.sales WITH NO DATA;
-- the stale one is not refreshed after this; the fresh one is
INSERT INTO public.sales VALUES (1000, 'r0', 1), (1001, 'r9', 2);
REFRESH MATERIALIZED VIEW public.mv_fresh;
SQL
my %conn = (source => $src->connstr($db), target => $tgt->connstr($db));

{
	my $c = RelocateTest::run_copy(%conn, command => 'check', args => ['--json']);
	my $doc = eval { JSON::PP->new->decode($c->{stdout}) } // {};
	my ($item) = grep { $_->{name} eq 'tables.materialized_views' } @{ $doc->{checks} // [] };
	like($item->{message}, qr/^3 materialized views: public\.mv_empty, public\.mv_fresh, public\.mv_stale: .*verify compares them apart/,
		'check: lists the three views and says verify compares them apart');
}
RelocateTest::copy_ok('copy', %conn);
is(RelocateTest::query($tgt, $db, 'SELECT string_agg(format($$%s %s$$, region, n), $$, $$ ORDER BY region) FROM public.mv_stale'),
	'r0 101, r1 100, r2 100, r9 1', 'the target refreshed the stale view from the copied rows');

{
	my $v = RelocateTest::run_copy(%conn, command => 'verify');
	is($v->{exit}, 0, 'verify: exit 0 (views are not counted)') or diag($v->{stdout} . $v->{stderr});
	like($v->{stdout}, qr/^materialized views \(2 compared, 1 differs; not counted: /m,
		'verify: the views populated on both sides, as their own category');
	like($v->{stdout}, qr/^  public\.mv_stale: missing on target row \(100,r0\)\n  public\.mv_stale: extra on target row \(101,r0\)\n  public\.mv_stale: extra on target row \(1,r9\)$/m,
		'verify: names the rows of the stale view') or diag($v->{stdout});
	unlike($v->{stdout}, qr/^  public\.mv_(fresh|empty):/m, 'verify: the fresh one matches, the empty one is not compared');
	like($v->{stdout}, qr/^result: MATCH$/m, 'verify: MATCH');
	my $j = RelocateTest::run_copy(%conn, command => 'verify', args => ['--json']);
	my $doc = eval { JSON::PP->new->decode($j->{stdout}) } // {};
	is($doc->{row_differences_total}, 0, 'verify --json: no row difference of tables');
	cmp_ok($doc->{materialized_view_differences_total} // 0, '>', 0, 'verify --json: the view\'s rows counted apart');
	is_deeply([ map { "$_->{table} " . ($_->{match} ? 'match' : 'differs') } grep { $_->{materialized_view} } @{ $doc->{tables} // [] } ],
		[ 'mv_fresh match', 'mv_stale differs' ], 'verify --json: each view flagged, fresh matches, stale differs');
}
done_testing();

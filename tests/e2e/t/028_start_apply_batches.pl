# Apply batches updates by key into one statement per table; this test
# holds it to the source's results where batching could go wrong:
#   - many rows updated in one transaction, the same row updated twice,
#     a row inserted then updated, updates of rows whose unchanged TOAST
#     column must stay, and columns under a non-deferrable unique index
#     rotated in an order that only works one row at a time;
#   - values of types whose name alone means a length (character, bit)
#     batched by key and found by FULL identity in arrays: cast as
#     character or bit they were cut to one (e2e 096's arrtest stopped
#     apply with "no such row");
#   - a conflict inside a batch (a row deleted on the target behind
#     pgrelocate's back): start stops, names the table and keys, leaves the
#     target transaction rolled back, and after the fix resumes exactly.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL, note text);
INSERT INTO public.items SELECT i, i, 'note ' || i FROM generate_series(1, 300) i;
CREATE TABLE public.uniq (id int PRIMARY KEY, code int NOT NULL UNIQUE, tag text);
INSERT INTO public.uniq VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c');
CREATE TABLE public.docs (id int PRIMARY KEY, n int NOT NULL, body text);
ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO public.docs SELECT i, 0, repeat(md5(i::text), 4000) FROM generate_series(1, 20) i;
CREATE TABLE public."Key ""Odd"" ü" ("a b" text, "C" int, v int, PRIMARY KEY ("a b", "C"));
INSERT INTO public."Key ""Odd"" ü" SELECT 'k''' || i, i, 0 FROM generate_series(1, 50) i;
CREATE TABLE public.padded (id int PRIMARY KEY, c char(5), b bit(3), n int);
INSERT INTO public.padded SELECT i, 'ab' || i, B'101', 0 FROM generate_series(1, 20) i;
CREATE TABLE public.fixed_arrays (id int, c char(5)[], b bit(3)[]);
ALTER TABLE public.fixed_arrays REPLICA IDENTITY FULL;
INSERT INTO public.fixed_arrays VALUES (1, '{"abc  ",abcde}', '{101,011}'), (2, '{xy}', '{111}');
});
FollowTest::create_marker($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');

$src->safe_psql($db, $_) for (
	'UPDATE public.items SET v = v * 10 WHERE id <= 280',
	'BEGIN; UPDATE public.items SET v = 100 WHERE id = 1; UPDATE public.items SET v = 200 WHERE id = 1; '
	  . "UPDATE public.items SET note = 'twice' WHERE id = 1; COMMIT",
	"BEGIN; INSERT INTO public.items VALUES (301, 1, 'new'); UPDATE public.items SET v = 2 WHERE id = 301; "
	  . 'UPDATE public.items SET v = 3 WHERE id = 301; COMMIT',
	'BEGIN; UPDATE public.uniq SET code = 4 WHERE id = 1; UPDATE public.uniq SET code = 1 WHERE id = 2; '
	  . 'UPDATE public.uniq SET code = 2 WHERE id = 3; UPDATE public.uniq SET code = 3 WHERE id = 1; COMMIT',
	'UPDATE public.docs SET n = n + 1',
	'UPDATE public.docs SET n = n + 1 WHERE id % 2 = 0',
	"UPDATE public.\"Key \"\"Odd\"\" ü\" SET v = \"C\" * 2",
	"UPDATE public.padded SET c = 'z' || id, b = B'110', n = n + 1",
	'UPDATE public.fixed_arrays SET id = id + 10',
	'BEGIN; UPDATE public.items SET v = -5 WHERE id = 290; DELETE FROM public.items WHERE id = 290; '
	  . "INSERT INTO public.items VALUES (290, 7, 'back'); UPDATE public.items SET v = 8 WHERE id = 290; COMMIT");
FollowTest::marker($src, $db);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db), 'the target caught up');
FollowTest::compare_tables($src, $tgt, $db);
is(RelocateTest::query($tgt, $db, q{SELECT v || '|' || note FROM public.items WHERE id = 1}), '200|twice',
	'the last of several updates of one row wins');
is(RelocateTest::query($tgt, $db, q{SELECT string_agg(id || ':' || code, ',' ORDER BY id) FROM public.uniq}),
	'1:3,2:1,3:2', 'a rotation under a non-deferrable unique index applied in order');
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FROM public.docs WHERE body = repeat(md5(id::text), 4000)"),
	'20', 'unchanged TOAST values stayed through batched updates');
is(RelocateTest::query($tgt, $db, q{SELECT string_agg(c || ' ' || b, ',' ORDER BY id) FROM public.padded WHERE id <= 2}),
	'z1 110,z2 110', 'character(5) and bit(3) values batched by key are not cut to one');
is(RelocateTest::query($tgt, $db, q{SELECT string_agg(id || ' ' || c::text || ' ' || b::text, ',' ORDER BY id) FROM public.fixed_arrays}),
	'11 {"abc  ",abcde} {101,011},12 {"xy   "} {111}', 'arrays of character(5) and bit(3) found by FULL identity');

# a conflict inside a batch
$tgt->safe_psql($db, 'DELETE FROM public.items WHERE id = 77');
my $before = RelocateTest::query($tgt, $db, 'SELECT sum(v) FROM public.items WHERE id BETWEEN 60 AND 90');
$src->safe_psql($db, 'UPDATE public.items SET v = -1 WHERE id BETWEEN 60 AND 90');
my $r = FollowTest::finish($run);
isnt($r->{exit}, 0, 'start stops on a row missing on the target');
like($r->{stderr}, qr/update of \d+ rows in public\.items, keys \("id"\)=\(\d+\)/,
	'it names the table and the keys of the batch');
like($r->{stderr}, qr/no such row on the target \(conflict\)/, 'and says it is a conflict');
is(RelocateTest::query($tgt, $db, 'SELECT sum(v) FROM public.items WHERE id BETWEEN 60 AND 90'),
	$before, 'the batch with the conflict was rolled back on the target');

# the fix: put the row back as the source had it before; start goes on
$tgt->safe_psql($db, "INSERT INTO public.items VALUES (77, 770, 'note 77')");
my $run2 = FollowTest::start_bg($src, $tgt, $db);
FollowTest::marker($src, $db);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db), 'after the fix start catches up');
FollowTest::compare_tables($src, $tgt, $db);
is(FollowTest::stop_run($run2)->{exit}, 0, 'start stops on SIGINT with exit 0');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);

done_testing();

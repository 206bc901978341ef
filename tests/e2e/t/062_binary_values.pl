# Values in pgoutput's binary form while following (--protocol auto, the
# default, on PostgreSQL 14+ sources), and the fall back to text.
#
# A. 15 -> 15: every published type is safe in binary (built-in bases,
#    enums, domains, ranges, multiranges, arrays of built-in elements with
#    bounds, a composite of built-in fields): start logs that values travel
#    in binary; inserts, updates (batched by key, by FULL identity with a
#    point and json compared as text) and deletes of edge values (floats
#    -0/NaN/Infinity, numeric scales and NaN, timestamps with and without
#    zone, intervals, jsonb, bytea) leave every table equal row by row.
#    --protocol text is logged, recorded, and kept by a later start without
#    the option; a bad --protocol is a usage error.
# B. 15 -> 15 with an array of an enum and a composite with an enum field:
#    those types are logged as needing text, the stream is text, the rows
#    equal; --protocol binary refuses, naming the type.
# C. 14 -> 17: binary across versions, rows equal.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
# C's servers and clients, if cached.  The newest client programs go first
# on PATH before the first pair: IPC::Run keeps the path it first found.
my %have = map { $_ => -x ($ENV{PGRELOCATE_PG_VERSIONS} // '') . "/$_/bin/postgres" } (14, 17);
my $cross = $have{14} && $have{17} && (RelocateTest::client_bin() // '') =~ /client-(\d+)/ && $1 >= 17;
RelocateTest::install_path(17) if $cross;

my $SAFE_SCHEMA = <<'SQL';
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE TYPE public.dims AS (w numeric, h float8, label text, at timestamptz);
CREATE DOMAIN public.posint AS int CHECK (VALUE > 0);
CREATE DOMAIN public.label AS text COLLATE "C" CHECK (VALUE <> 'forbidden');
CREATE TYPE public.floatrange AS RANGE (subtype = float8);
CREATE TABLE public.kinds (
  id int PRIMARY KEY, f8 float8, f4 real, n numeric, n2 numeric(12, 4), ts timestamptz,
  tsp timestamp, d date, t time, tz timetz, iv interval, m public.mood, dm public.dims,
  pi public.posint, lb public.label, int_arr int[], txt_arr text[], f8_arr float8[],
  jb jsonb, js json, by bytea, u uuid, r int4range, fr public.floatrange, tr tstzrange,
  mr int4multirange, bits varbit, ip inet, cidr_ cidr, mac macaddr, money_ money,
  tsv tsvector, b bool, c char(3), vc varchar(10), i2 int2, i8 int8, o oid);
CREATE TABLE public.by_enum (m public.mood PRIMARY KEY, pi public.posint NOT NULL, v text);
CREATE TABLE public.nokey (label text, f8 float8, n numeric, ts timestamptz, js json, p point);
ALTER TABLE public.nokey REPLICA IDENTITY FULL;
INSERT INTO public.kinds (id) VALUES (0);
INSERT INTO public.by_enum VALUES ('sad', 1, 'copied');
INSERT INTO public.nokey VALUES ('twin', 'NaN', 'NaN', 'infinity', '{"a": 1}', '(1,2)'),
  ('twin', 'NaN', 'NaN', 'infinity', '{"a": 1}', '(1,2)'), ('zero', '-0', '-0.000', '-infinity', '[]', '(0,-0)');
SQL

my @SAFE_CHANGES = (
	<<'SQL',
INSERT INTO public.kinds VALUES
  (1, 'NaN', 'NaN', 'NaN', 1.5, 'infinity', 'infinity', 'infinity', '24:00', '23:59:59.999999+14:59',
   '-178000000 years', 'sad', ROW(1.5, 'NaN', 'a "quoted", label', 'infinity'), 1, 'x',
   '{1,NULL,3}', '{"a,b","NULL",NULL,"\"q\"","","back\\slash"}', '{NaN,Infinity,-Infinity,-0}',
   '{"b": [1, 2.50, {"c": null}], "a": "üé", "big": 12345678901234567890.123}',
   '{"a": 1,   "a": 2, "b" : [1, 2 ]}', '\x00ff00', '00000000-0000-0000-0000-000000000000',
   'empty', '[-0,Infinity)', '[2024-01-01 00:00+00,infinity)', '{[1,3),[5,7)}', B'1010101',
   '::ffff:1.2.3.4/120', '10.0.0.0/8', '08:00:2b:01:02:03', '-92233720368547758.08',
   'a fat cat:1A sat', true, 'ab', 'ü', -32768, 9223372036854775807, 4294967295),
  (2, 'Infinity', 'Infinity', 'Infinity', -0.0001, '-infinity', '-infinity', '-infinity', '00:00',
   '00:00-15:59', '1 mon -1 days +00:00:00.000001', 'it''s "complicated"', ROW(NULL, NULL, NULL, NULL),
   2147483647, '', '[0:2]={7,8,9}', '{}', '[-3:-2]={1.5,-0}', '[]', '[]', '', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
   '(,5]', 'empty', 'empty', '{}', B'', '0.0.0.0/0', '::/0', 'ff:ff:ff:ff:ff:ff', '0', '', false, '', '', 0, 0, 0),
  (3, '-Infinity', '-Infinity', '-Infinity', 99999999.9999, '4713-01-01 00:00:00+00 BC',
   '294276-12-31 23:59:59.999999', '5874897-12-31', '12:34:56.789', '12:00+00', '178000000 years',
   NULL, ROW(0, '-0', '', '2000-01-01 00:00+00'), NULL, NULL, '{{1,2},{3,4}}', NULL, NULL, 'null',
   'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, '-0', '-0', '-0.000', '0.0000', '2024-02-29 23:59:59.999999+05:45', '2024-02-29 23:59:59.999999',
   '2024-02-29', NULL, NULL, '0', 'ok', NULL, 3, NULL, '{}', '{""}', NULL, '{}', '{}', NULL, NULL,
   '[1,1]', '(1.5,2.5]', NULL, '{[1,2)}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (5, '1.7976931348623157e308', '3.4028235e38', ('0.' || repeat('0', 990) || '123456789')::numeric,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (6, '5e-324', '1e-45', repeat('9', 1000)::numeric, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (7, 0.1::float8 + 0.2::float8, 0.1::real + 0.2::real, 1::numeric / 3, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
SQL
	"UPDATE public.kinds SET f8 = '-216237.00000035969', n = 'NaN', m = 'happy' WHERE id = 4",
	"UPDATE public.kinds SET f8 = -f8, by = '\\xdeadbeef' WHERE id IN (1, 2, 5, 6)",
	"UPDATE public.kinds SET id = -id WHERE id IN (1, 2, 3)",
	'DELETE FROM public.kinds WHERE id = 7',
	"INSERT INTO public.by_enum VALUES ('ok', 2, 'a'), ('happy', 3, 'b'), ('it''s \"complicated\"', 4, 'c')",
	"UPDATE public.by_enum SET v = 'updated', pi = pi + 10",
	"DELETE FROM public.by_enum WHERE m = 'happy'",
	"UPDATE public.nokey SET label = 'one twin' WHERE ctid = (SELECT min(ctid) FROM public.nokey WHERE label = 'twin')",
	"UPDATE public.nokey SET js = '{\"b\":  2}', p = '(-0,0)' WHERE label = 'zero'",
	"DELETE FROM public.nokey WHERE label = 'zero'",
);

# Start, apply @changes while following, compare; returns start's result.
sub follow_and_compare
{
	my ($src, $tgt, $what, $changes, @args) = @_;
	my $run = FollowTest::start_bg($src, $tgt, $db, args => [@args]);
	ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), "$what: start reached the follow phase");
	$src->safe_psql($db, $_) for @$changes;
	ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), "$what: the target caught up");
	FollowTest::compare_tables($src, $tgt, $db);
	my $r = FollowTest::stop_run($run);
	is($r->{exit}, 0, "$what: start stops with exit 0") or diag($r->{stderr});
	return $r;
}

# --- A. 15 -> 15, binary ---
{
	my ($src, $tgt) = RelocateTest::new_pair(name => 'bin_a', dbname => $db);
	FollowTest::create_marker($src, $db);
	$src->safe_psql($db, $SAFE_SCHEMA);
	my $r = follow_and_compare($src, $tgt, 'A', \@SAFE_CHANGES, '--protocol', 'auto');
	like($r->{stderr}, qr/^pgrelocate: \[stream\] values travel in binary$/m,
		'A: values travel in binary');
	like($r->{stderr}, qr/^pgrelocate: \[stream\] safe in binary: .*public\.dims.*public\.floatrange.*public\.mood.*public\.posint/m,
		'A: the composite of built-in fields, the range, the enum and the domain are safe');
	unlike($r->{stderr}, qr/needs text/, 'A: no type needs text');
	is(RelocateTest::query($tgt, $db, "SELECT count(*) FROM public.nokey WHERE label = 'twin'"),
		'1', 'A: FULL identity with a point: one of the two twins changed, not both');

	# the escape hatch, recorded for the next start
	$r = follow_and_compare($src, $tgt, 'A text', [ "UPDATE public.kinds SET f8 = -f8 WHERE id = 4" ],
		'--protocol', 'text');
	like($r->{stderr}, qr/^pgrelocate: \[stream\] values travel as text \(--protocol text\)$/m,
		'A: --protocol text streams text');
	is(RelocateTest::query($tgt, $db,
		"SELECT message FROM pgrelocate.events WHERE context = 'protocol' ORDER BY id DESC LIMIT 1"),
		'text', 'A: --protocol text is recorded on the target');
	$r = follow_and_compare($src, $tgt, 'A again', [ "UPDATE public.kinds SET f4 = -f4 WHERE id = 4" ]);
	like($r->{stderr}, qr/^pgrelocate: \[stream\] values travel as text \(--protocol text\)$/m,
		'A: a later start without --protocol keeps text');
	$r = RelocateTest::copy_fails_like('A: a bad --protocol',
		[qr/^pgrelocate: error: invalid value for --protocol: "fast"$/m, qr/^HINT:  Use auto, text or binary\.$/m],
		FollowTest::conn($src, $tgt, $db), command => 'start', args => [ '--protocol', 'fast' ]);
	is($r->{exit}, 2, 'A: a bad --protocol is a usage error (exit 2)');
	FollowTest::cleanup_ok('A: cleanup', $src, $tgt, $db);
	$src->stop;
	$tgt->stop;
}

# --- B. an array of an enum and a composite with an enum field: text ---
{
	my ($src, $tgt) = RelocateTest::new_pair(name => 'bin_b', dbname => $db);
	FollowTest::create_marker($src, $db);
	$src->safe_psql($db, <<'SQL');
CREATE TYPE public.mood AS ENUM ('sad', 'ok');
CREATE TYPE public.felt AS (m public.mood, at timestamptz);
CREATE TABLE public.feelings (id int PRIMARY KEY, moods public.mood[], f public.felt, n numeric);
INSERT INTO public.feelings VALUES (1, '{sad}', ROW('ok', '2024-01-01 00:00+00'), 1.50);
SQL
	my $r = follow_and_compare($src, $tgt, 'B', [
		"INSERT INTO public.feelings VALUES (2, '[2:3]={ok,NULL}', ROW('sad', 'infinity'), 'NaN')",
		"UPDATE public.feelings SET moods = moods || 'ok'::public.mood, n = -0.000 WHERE id = 1",
		"UPDATE public.feelings SET id = 3 WHERE id = 2" ], '--protocol', 'auto');
	like($r->{stderr},
		qr/^pgrelocate: \[stream\] type public\.mood\[\] needs text: the binary form of an array embeds the OID of its element type, which differs between servers$/m,
		'B: the array of the enum needs text, and the log says why');
	like($r->{stderr},
		qr/^pgrelocate: \[stream\] type public\.felt needs text: the binary form of a composite embeds the OIDs of its fields' types, and a field's type is user-defined/m,
		'B: the composite with an enum field needs text');
	like($r->{stderr}, qr/^pgrelocate: \[stream\] values travel in text \(type public\.felt needs text\)$/m,
		'B: the stream falls back to text by itself');
	$src->safe_psql($db, "INSERT INTO public.feelings VALUES (4, '{sad}', NULL, 4)");
	RelocateTest::copy_fails_like('B: --protocol binary refuses, naming the type',
		[qr/^pgrelocate: error: \[stream\] cannot send values in binary: a published column has type public\.felt$/m,
		 qr/^DETAIL:  Type public\.felt cannot travel in binary: the binary form of a composite/m],
		FollowTest::conn($src, $tgt, $db), command => 'start', args => [ '--protocol', 'binary' ]);
	is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.feelings WHERE id = 4'), '0',
		'B: nothing was applied by the refused run');
	FollowTest::cleanup_ok('B: cleanup', $src, $tgt, $db);
	$src->stop;
	$tgt->stop;
}

# --- C. 14 -> 17, binary across versions ---
SKIP:
{
	skip('servers 14 and 17 or client 17+ are not in the cache (make pg-versions)', 1)
	  unless $cross;
	my ($src, $tgt) = RelocateTest::new_pair(
		name         => 'bin_c',
		dbname       => $db,
		source_major => 14,
		target_major => 17);
	FollowTest::create_marker($src, $db);
	$src->safe_psql($db, $SAFE_SCHEMA);
	my $r = follow_and_compare($src, $tgt, 'C', \@SAFE_CHANGES, '--protocol', 'auto');
	like($r->{stderr}, qr/^pgrelocate: \[stream\] values travel in binary$/m,
		'C: values travel in binary from 14 to 17');
	FollowTest::cleanup_ok('C: cleanup', $src, $tgt, $db);
}

done_testing();

# pgrelocate verify on a copied database: first everything matches (exit 0),
# even though the target's database defaults print values differently (time
# zone, bytea_output, DateStyle, extra_float_digits: verify pins its own);
# then the target is corrupted on purpose, one thing at a time in kind, and
# verify reports exactly those rows (by full key, hostile identifiers and
# keys included) and schema objects, nothing else, with exit status 3.
# Bad input fails with a clear message and changes nothing.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
my $source = $src->connstr('app');
my $target = $tgt->connstr('app');

$src->safe_psql('app', <<'SQL');
CREATE TABLE public.big (id bigint PRIMARY KEY, v text NOT NULL, n int);
INSERT INTO public.big SELECT i, 'value ' || i, i % 1000 FROM generate_series(1, 1000000) AS i;
CREATE INDEX big_n_idx ON public.big (n);
CREATE SEQUENCE public.invoice_no;
SELECT setval('public.invoice_no', 5000);

CREATE TYPE public.pair AS (x int, y text);
CREATE TABLE public.types (
    id int PRIMARY KEY, f float8, n numeric, ts timestamptz, j jsonb, b bytea, a int[],
    c public.pair, iv interval, d date);
INSERT INTO public.types VALUES
  (1, '-0', 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (2, 0.1, 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (3, 0.1, 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (4, 0.1, 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (5, 0.1, 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (6, 0.1, 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (7, 0.1, 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  (8, 'NaN', 1.0, '2024-05-01 12:00:00+00', '{"a": 1}', '\x00ff', '{1,2}', '(1,x)', '1 day', '2024-05-01'),
  -- never changed: values whose text depends on session settings
  (9, '-0', 1.10, '2024-05-01 23:59:59.999999+00', '{"k": [1.50, null]}', '\x5c00', '[0:1]={1,2}', '(,"a""b")', '-1 mon 3 days 04:05:06', '0001-01-01 BC'),
  (10, 'NaN', 'NaN', 'infinity', 'null', '', '{}', NULL, '0', 'infinity'),
  (11, 1e308, 0.000000000000000000001, '1999-12-31 23:00:00+00', '"ü"', '\xdeadbeef', '{{1,2},{3,4}}', '(2,"")', '1.5 seconds', '2000-02-29');

CREATE TABLE public.docs (id int PRIMARY KEY, doc jsonb);
INSERT INTO public.docs VALUES (1, jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024))), (2, '{}');

CREATE TABLE public.events (kind text, at int);
INSERT INTO public.events SELECT 'k' || (i % 7), i % 50 FROM generate_series(1, 3000) AS i;

CREATE SCHEMA "Sales ""EU""";
CREATE TABLE "Sales ""EU"""."Order Items ü" (
    "Order Id" uuid, "line
no" text, qty int, PRIMARY KEY ("Order Id", "line
no"));
INSERT INTO "Sales ""EU"""."Order Items ü" VALUES
  ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'plain', 1),
  ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', E'it''s "quoted"', 2),
  ('b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', E'two\nlines', 3),
  ('c2eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', 'größe ✓', 4),
  ('d3eebc99-9c0b-4ef8-bb6d-6bb9bd380a14', E'back\\slash', 5);
SQL

RelocateTest::copy_ok('copy', source => $source, target => $target);

# Database defaults on the target that print values differently than on
# the source: verify must not be fooled by them.
$tgt->safe_psql('postgres', <<'SQL');
ALTER DATABASE app SET TimeZone = 'Asia/Kolkata';
ALTER DATABASE app SET bytea_output = 'escape';
ALTER DATABASE app SET DateStyle = 'SQL, DMY';
ALTER DATABASE app SET IntervalStyle = 'sql_standard';
ALTER DATABASE app SET extra_float_digits = 0;
SQL

sub verify
{
	my (@args) = @_;
	return RelocateTest::run_copy(
		command => 'verify',
		source  => $source,
		target  => $target,
		args    => \@args);
}

sub verify_json
{
	my ($name, @args) = @_;
	my $r = verify('--json', @args);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) };
	ok($j, "$name: stdout is JSON") or diag($r->{stdout} . $r->{stderr});
	return ($r, $j // {});
}

# 1. A faithful copy matches.
{
	my ($r, $j) = verify_json('clean', '--jobs', 3);
	is($r->{exit}, 0, 'clean copy: exit status 0');
	ok($j->{match}, 'clean copy: match is true');
	is($j->{row_differences_total}, 0, 'clean copy: no row differences');
	is_deeply($j->{schema_differences}, [], 'clean copy: no schema differences');
	my %rows = map { ("$_->{schema}.$_->{table}" => $_->{source_rows}) } @{ $j->{tables} };
	is($rows{'public.big'}, 1000000, 'clean copy: 1M rows counted in public.big');
	is($rows{'public.events'}, 3000, 'clean copy: key-less table counted');
	ok(!exists $rows{'pgrelocate.migration'}, "clean copy: the tool's state schema is not compared");

	my $text = verify();
	is($text->{exit}, 0, 'clean copy, text: exit status 0');
	like($text->{stdout}, qr/^result: MATCH$/m, 'clean copy, text: result line');
	like($text->{stdout}, qr/^public\.big\s+1000000\s+1000000\s+0\s+0\s+0\s+ok$/m,
		'clean copy, text: summary row');
}

# 2. Corruptions.
$tgt->safe_psql('app', <<'SQL');
UPDATE public.big SET n = n + 1 WHERE id = 654321;
DELETE FROM public.big WHERE id = 1000;
INSERT INTO public.big VALUES (1000001, 'extra', 1);
UPDATE public.types SET f = 0 WHERE id = 1;
UPDATE public.types SET n = 1.00 WHERE id = 2;
UPDATE public.types SET ts = ts + interval '1 microsecond' WHERE id = 3;
UPDATE public.types SET j = '{"a": 1.0}' WHERE id = 4;
UPDATE public.types SET b = '\x00fe' WHERE id = 5;
UPDATE public.types SET a = '[0:1]={1,2}' WHERE id = 6;
UPDATE public.types SET c = '(1,X)' WHERE id = 7;
UPDATE public.types SET f = 'Infinity' WHERE id = 8;
UPDATE public.docs SET doc = jsonb_build_object('blob',
    overlay(doc->>'blob' PLACING 'y' FROM 5000000 FOR 1)) WHERE id = 1;
UPDATE public.events SET at = 99 WHERE ctid = (SELECT min(ctid) FROM public.events WHERE kind = 'k3' AND at = 3);
INSERT INTO public.events VALUES ('k1', 1), ('k1', 1);
SELECT setval('public.invoice_no', 4999);
DROP INDEX public.big_n_idx;
UPDATE "Sales ""EU"""."Order Items ü" SET qty = 30 WHERE "line
no" = E'two\nlines';
DELETE FROM "Sales ""EU"""."Order Items ü" WHERE "line
no" = E'it''s "quoted"';
INSERT INTO "Sales ""EU"""."Order Items ü" VALUES ('e4eebc99-9c0b-4ef8-bb6d-6bb9bd380a15', 'größe ✓', 6);
SQL

my @want_rows = (
	'Sales "EU".Order Items ü changed {"Order Id":"b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12","line\nno":"two\nlines"}',
	'Sales "EU".Order Items ü extra {"Order Id":"e4eebc99-9c0b-4ef8-bb6d-6bb9bd380a15","line\nno":"größe ✓"}',
	'Sales "EU".Order Items ü missing {"Order Id":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","line\nno":"it\'s \"quoted\""}',
	'public.big changed {"id":"654321"}',
	'public.big extra {"id":"1000001"}',
	'public.big missing {"id":"1000"}',
	'public.docs changed {"id":"1"}',
	'public.events extra 1 (99,k3)',
	'public.events extra 2 (1,k1)',
	'public.events missing 1 (3,k3)',
	(map { "public.types changed {\"id\":\"$_\"}" } 1 .. 8));

sub row_lines
{
	my ($j) = @_;
	my $enc = JSON::PP->new->utf8->canonical;
	return [
		sort map {
			my $name = "$_->{schema}.$_->{table}";
			utf8::encode($name);
			defined $_->{key}
			  ? "$name $_->{kind} " . $enc->encode($_->{key})
			  : "$name $_->{kind} $_->{copies} $_->{row}"
		} @{ $j->{row_differences} }
	];
}

{
	my ($r, $j) = verify_json('corrupted', '--jobs', 2);
	is($r->{exit}, 3, 'corrupted: exit status 3 (differences)');
	ok(!$j->{match}, 'corrupted: match is false');
	is_deeply(row_lines($j), [ sort @want_rows ], 'corrupted: exactly the corrupted rows, by full key')
	  or diag(explain(row_lines($j)));
	is($j->{row_differences_total}, 19, 'corrupted: total row differences (duplicates counted)');
	my @schema = map { "$_->{kind} $_->{object}: $_->{problem}" } @{ $j->{schema_differences} };
	is_deeply(\@schema,
		[ 'index public.big_n_idx: missing on target',
		  'sequence public.invoice_no: target behind source' ],
		'corrupted: exactly the missing index and the sequence behind')
	  or diag(explain(\@schema));
	my ($seq) = grep { $_->{kind} eq 'sequence' } @{ $j->{schema_differences} };
	is_deeply([ $seq->{source}, $seq->{target} ], [ '5000', '4999' ], 'corrupted: sequence values');
	my %t = map { ("$_->{schema}.$_->{table}" => $_) } @{ $j->{tables} };
	is_deeply([ @{ $t{'public.big'} }{qw(source_rows target_rows missing extra changed)} ],
		[ 1000000, 1000000, 1, 1, 1 ], 'corrupted: public.big counts');
	is_deeply([ @{ $t{'public.events'} }{qw(source_rows target_rows missing extra changed)} ],
		[ 3000, 3002, 1, 3, 0 ], 'corrupted: key-less table counted as a multiset');
	ok($t{'public.types'}{match} == 0 && $t{'public.docs'}{changed} == 1, 'corrupted: per-table flags');
}

# Text report: one line per difference with its key as a SQL literal, capped
# by --max-differences while the total stays exact.
{
	my $r = verify('--max-differences', 2, '--tables', 'public.big,"Sales ""EU""".*');
	is($r->{exit}, 3, 'text: exit status 3');
	my @lines = $r->{stdout} =~ /^  (\S.*)$/mg;
	my @diff_lines = grep { /: (missing on target|extra on target|different values) / } @lines;
	is(scalar @diff_lines, 2, 'text: --max-differences 2 lists two rows');
	like($r->{stdout}, qr/^row differences \(6\):$/m, 'text: all six counted');
	like($r->{stdout}, qr/^  \.\.\. and 4 more \(--max-differences 2\)$/m, 'text: says how many more');
	like($r->{stdout}, qr/^schema differences \(1\):\n  index public\.big_n_idx: missing on target$/m,
		'text: --tables keeps the index of public.big');
	unlike($r->{stdout}, qr/invoice_no|public\.types|public\.docs/, 'text: --tables leaves the rest out');

	my $all = verify('--tables', '"Sales "*.*');
	like($all->{stdout},
		qr/^  "Sales ""EU"""\."Order Items ü": different values \("Order Id", "line\?no"\)=\('b1eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', E'two\\nlines'\)$/m,
		'text: composite key with uuid and newline on one line');
	like($all->{stdout},
		qr/^  "Sales ""EU"""\."Order Items ü": missing on target \("Order Id", "line\?no"\)=\('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'it''s "quoted"'\)$/m,
		'text: quotes in a key');
}

# 3. Bad input: a clear error, nothing changed on either server.
{
	my %before = (src => RelocateTest::fingerprint($src, 'app'), tgt => RelocateTest::fingerprint($tgt, 'app'));
	my $closed = RelocateTest::closed_port();
	RelocateTest::copy_fails_like('unreachable target', [qr/could not connect to the target/],
		command => 'verify', source => $source,
		target => "host=127.0.0.1 port=$closed dbname=app connect_timeout=5");
	RelocateTest::copy_fails_like('bad --max-differences',
		[qr/--max-differences expects a whole number from 0 to 1000000000, not "-1"/],
		command => 'verify', source => $source, target => $target, args => [ '--max-differences', '-1' ]);
	RelocateTest::copy_fails_like('no table matches',
		[qr/--tables pattern nosuch\* matches no table/],
		command => 'verify', source => $source, target => $target, args => [ '--tables', 'nosuch*' ]);
	RelocateTest::copy_fails_like('missing database',
		[qr/could not connect to the source/, qr/database "nope" does not exist/],
		command => 'verify', source => $src->connstr('nope'), target => $target);
	# Ctrl-C while the servers digest: queries cancelled, exit 130, no result.
	my $h = RelocateTest::start_copy(command => 'verify', source => $source, target => $target,
		args => [ '--jobs', 2 ]);
	ok(RelocateTest::wait_until($src, 'app',
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate verify'"
			  . " AND state = 'active' AND query LIKE '%hashtextextended%'", 't', 60),
		'interrupted: the source is digesting');
	kill 'INT', $h->{pid};
	my $int = RelocateTest::finish_copy($h);
	is($int->{exit}, 130, 'interrupted: exit status 130');
	like($int->{stderr}, qr/verify interrupted: no result \(nothing was changed\)/, 'interrupted: says so');
	unlike($int->{stderr}, qr/canceling statement/, 'interrupted: no error line per cancelled query');
	unlike($int->{stdout}, qr/result:/, 'interrupted: no result printed');
	is_deeply(RelocateTest::fingerprint($src, 'app'), $before{src}, 'bad input: source unchanged');
	is_deeply(RelocateTest::fingerprint($tgt, 'app'), $before{tgt}, 'bad input: target unchanged');
}

done_testing();

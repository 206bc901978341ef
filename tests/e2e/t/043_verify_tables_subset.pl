# pgrelocate verify and --tables: a partitioned table is chosen whole (its
# partitions are compared under its name); after a copy of some tables only,
# verify without --tables compares those (the target's state names them),
# so the tables left out are not reported missing; --tables naming a table
# left out reports it missing, with its index, constraint and sequence.
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
CREATE TABLE public.a (id int PRIMARY KEY, v text);
INSERT INTO public.a SELECT i, 'a' || i FROM generate_series(1, 1000) AS i;
CREATE TABLE public.b (id serial PRIMARY KEY, v text);
INSERT INTO public.b (v) SELECT 'b' || i FROM generate_series(1, 100) AS i;
CREATE TABLE public.parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.parted_2023 PARTITION OF public.parted FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.parted_2024 PARTITION OF public.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO public.parted SELECT i, date '2023-06-01' + (i % 400), 'p' || i FROM generate_series(1, 2000) AS i;
SQL

RelocateTest::copy_ok('copy of a and parted', source => $source, target => $target,
	args => [ '--tables', 'a,parted' ]);

sub verify_json
{
	my (@args) = @_;
	my $r = RelocateTest::run_copy(source => $source, target => $target,
		command => 'verify', args => [ '--json', @args ]);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) } // {};
	return ($r, $j);
}

sub tables_of
{
	my ($j) = @_;
	return [ map { "$_->{schema}.$_->{table} $_->{source_rows}" } @{ $j->{tables} // [] } ];
}

{
	my ($r, $j) = verify_json();
	is($r->{exit}, 0, 'no --tables after a subset copy: exit status 0') or diag($r->{stdout} . $r->{stderr});
	like($r->{stderr}, qr/comparing the tables this migration moves: --tables 'a,parted'/,
		'no --tables: says it uses the migration\'s tables');
	is_deeply(tables_of($j), [ 'public.a 1000', 'public.parted_2023 1070', 'public.parted_2024 930' ],
		'no --tables: a and the partitions of parted');
}
{
	my ($r, $j) = verify_json('--tables', 'parted');
	is($r->{exit}, 0, '--tables parted: exit status 0');
	is_deeply(tables_of($j), [ 'public.parted_2023 1070', 'public.parted_2024 930' ],
		'--tables parted: its partitions');
}
{
	my ($r, $j) = verify_json('--tables', 'b');
	is($r->{exit}, 3, '--tables b (left out of the copy): exit status 3');
	is_deeply(tables_of($j), [], '--tables b: no rows compared (not on the target)');
	is_deeply(
		[ map { "$_->{kind} $_->{object}: $_->{problem}" } @{ $j->{schema_differences} } ],
		[ 'column public.b.id: missing on target',
		  'column public.b.v: missing on target',
		  'constraint public.b b_pkey: missing on target',
		  'index public.b_pkey: missing on target',
		  'sequence public.b_id_seq: missing on target',
		  'table public.b: missing on target' ],
		'--tables b: the table, its columns, key, index and sequence missing');
}

# Columns are matched by name: the same table with its columns in another
# order on the target has the same rows; the order itself is a schema
# difference (SELECT * and INSERT without a column list see it).
$src->safe_psql('app', <<'SQL');
CREATE TABLE public.c (id int PRIMARY KEY, x text, y float8);
INSERT INTO public.c SELECT i, 'x' || i, i / 3.0 FROM generate_series(1, 500) AS i;
SQL
$tgt->safe_psql('app', <<'SQL');
CREATE TABLE public.c (y float8, x text, id int PRIMARY KEY);
INSERT INTO public.c (id, x, y) SELECT i, 'x' || i, i / 3.0 FROM generate_series(1, 500) AS i;
SQL
{
	my ($r, $j) = verify_json('--tables', 'c');
	is($r->{exit}, 3, 'columns in another order: exit status 3') or diag($r->{stdout} . $r->{stderr});
	is_deeply(
		[ map { "$_->{kind} $_->{object}: $_->{problem}" } @{ $j->{schema_differences} } ],
		[ 'column order public.c: different' ], 'columns in another order: the order is the one schema difference');
	is_deeply($j->{row_differences} // [], [], 'columns in another order: rows matched by column name');
	is_deeply(tables_of($j), [ 'public.c 500' ], 'columns in another order: compared');
	$tgt->safe_psql('app', 'UPDATE public.c SET y = y + 1e-12 WHERE id = 250');
	($r, $j) = verify_json('--tables', 'c');
	is_deeply(
		[ map { "$_->{table} $_->{kind} " . JSON::PP->new->canonical->encode($_->{key}) } @{ $j->{row_differences} } ],
		[ 'c changed {"id":"250"}' ], 'columns in another order: a change in the last float8 digits is found');
}

$tgt->safe_psql('app', "UPDATE public.parted SET v = 'changed' WHERE id = 7");
{
	my ($r, $j) = verify_json();
	is($r->{exit}, 3, 'a changed partition row: exit status 3');
	is_deeply(
		[ map { "$_->{table} $_->{kind} " . JSON::PP->new->canonical->encode($_->{key}) } @{ $j->{row_differences} } ],
		[ 'parted_2023 changed {"at":"2023-06-08","id":"7"}' ],
		'a changed partition row: named by its partition and full key');
}

done_testing();

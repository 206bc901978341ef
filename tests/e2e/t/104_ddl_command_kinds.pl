# The kinds of schema change that capture replays (issue 17), one each,
# beyond the ALTER TABLE forms of 034 and 100: schemas (created, renamed),
# views, functions (also a BEGIN ATOMIC body), sequences (ALTER SEQUENCE),
# types, COMMENT, GRANT and REVOKE, CREATE EXTENSION, materialized views
# (created, refreshed), triggers, renames and drops.  After them the target
# equals the source, schema (pg_dump) and rows, and the event log lists
# each replayed command once, in order.  Then the refused kind: CREATE
# TABLE AS (its rows are not in the stream) stops apply with the table to
# copy again named in the repair.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;
use DdlTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
FollowTest::setup_pgbench($src, $db, scale => 1);
$_->safe_psql('postgres', 'CREATE ROLE reader') for $src, $tgt;

my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::poll($tgt, $db,
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 180, $run),
	'start reached the follow phase');

# [statement, tag replayed (undef: none)]
my @steps = (
	[ 'CREATE SCHEMA app2', 'CREATE SCHEMA' ],
	[ 'CREATE TABLE app2.t (id int PRIMARY KEY, v text)', 'CREATE TABLE' ],
	[ "INSERT INTO app2.t SELECT g, 'v' || g FROM generate_series(1, 10) g", undef ],
	[ 'ALTER SCHEMA app2 RENAME TO app3', 'ALTER SCHEMA' ],
	[ 'CREATE VIEW app3.v AS SELECT id, v FROM app3.t WHERE id > 2', 'CREATE VIEW' ],
	[ 'CREATE OR REPLACE FUNCTION app3.f(int) RETURNS int LANGUAGE sql IMMUTABLE '
		  . 'AS $$ SELECT $1 + 1 $$', 'CREATE FUNCTION' ],
	[ 'CREATE FUNCTION app3.g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END',
		'CREATE FUNCTION' ],
	[ 'CREATE SEQUENCE app3.s START 100', 'CREATE SEQUENCE' ],
	[ 'ALTER SEQUENCE app3.s INCREMENT BY 5', 'ALTER SEQUENCE' ],
	[ 'CREATE TYPE app3.pair AS (a int, b int)', 'CREATE TYPE' ],
	[ "COMMENT ON TABLE app3.t IS 'replayed comment'", 'COMMENT' ],
	[ 'GRANT SELECT, UPDATE ON app3.t TO reader', 'GRANT' ],
	[ 'REVOKE UPDATE ON app3.t FROM reader', 'REVOKE' ],
	[ 'CREATE EXTENSION pg_trgm SCHEMA app3', 'CREATE EXTENSION' ],
	[ 'CREATE MATERIALIZED VIEW app3.mv AS SELECT count(*) AS n FROM app3.t',
		'CREATE MATERIALIZED VIEW' ],
	[ "INSERT INTO app3.t VALUES (11, 'eleven')", undef ],
	[ 'REFRESH MATERIALIZED VIEW app3.mv', 'REFRESH MATERIALIZED VIEW' ],
	[ 'CREATE FUNCTION app3.touch() RETURNS trigger LANGUAGE plpgsql '
		  . "AS \$\$BEGIN NEW.v := NEW.v || '!'; RETURN NEW; END\$\$", 'CREATE FUNCTION' ],
	[ 'CREATE TRIGGER t_touch BEFORE INSERT ON app3.t FOR EACH ROW EXECUTE FUNCTION app3.touch()',
		'CREATE TRIGGER' ],
	[ "INSERT INTO app3.t VALUES (12, 'twelve')", undef ],
	[ 'ALTER TABLE app3.t RENAME TO t2', 'ALTER TABLE' ],
	[ 'ALTER FUNCTION app3.f(int) RENAME TO f2', 'ALTER FUNCTION' ],
	[ 'DROP VIEW app3.v', 'DROP VIEW' ],
	[ 'DROP FUNCTION app3.g()', 'DROP FUNCTION' ],
	[ 'DROP SEQUENCE app3.s', 'DROP SEQUENCE' ]);
DdlTest::run_sql($src, $db, $_->[0]) for @steps;
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 120),
	'the target caught up');
is(RelocateTest::query($tgt, $db, "SELECT string_agg(id || v, ',' ORDER BY id) FROM app3.t2 WHERE id > 10"),
	'11eleven,12twelve!', 'a row the source trigger changed came as the source wrote it, once');
ok(FollowTest::compare_tables($src, $tgt, $db), 'the target equals the source, schema and rows');
is(RelocateTest::query($tgt, $db,
		"SELECT string_agg(split_part(message, ' at ', 1), ',' ORDER BY id) FROM pgrelocate.events "
		  . "WHERE context = 'apply' AND message LIKE 'replayed %'"),
	join(',', map { "replayed $_->[1]" } grep { defined $_->[1] } @steps),
	'each command was replayed once, in order');

$src->safe_psql($db, 'CREATE TABLE app3.snap AS SELECT * FROM app3.t2');
my $r = FollowTest::finish($run);
isnt($r->{exit}, 0, 'start stops at CREATE TABLE AS');
like($r->{stderr},
	qr/refused: CREATE TABLE AS cannot be replayed exactly: its rows are not in the stream\n.*HINT:  Create the table empty, then fill it with INSERT \.\.\. SELECT \(the rows follow through the stream\)\. Table app3\.snap has to be copied again, with the change in it: run pgrelocate cleanup, then pgrelocate start again/s,
	'the error names the table to copy again and the repair');
unlike($r->{stderr}, qr/Run the same command to continue/, 'and does not say that running start again would go on');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
done_testing();

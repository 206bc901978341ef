# What pg_dump | pg_restore leaves different, made exact by copy (issue 13):
#   - item 7: foreign keys cloned onto partitions keep the source's names:
#     a partition attached with a key of its own name, one renamed after
#     creation, and two clone names swapped on one partition (renaming
#     directly would collide), at two levels of partitioning;
#   - item 6: inheriting tables keep the source's column order (pg_dump
#     would put inherited columns first): a column added to a parent after
#     its children, several levels, multiple inheritance, children with and
#     without columns of their own, columns dropped from a parent, check
#     constraints, defaults, a generated column; compared in pg_attribute
#     and pg_constraint (attislocal, attinhcount, conislocal, coninhcount),
#     by SELECT * and by INSERT without a column list; a column of the
#     child's own that its parent has NOT NULL; check says that a
#     target role that is no superuser cannot do it;
#   - item 8: the database's settings (ALTER DATABASE ... SET, plain and
#     list-valued), role-in-database settings for a role the target has
#     (one it lacks is skipped and named), its ACL and its comment.
# Compared in the catalogs of both sides, not only in pg_dump's text.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
for my $node ($src, $tgt)
{
	$node->safe_psql('postgres', 'CREATE ROLE reporter; CREATE ROLE auditor');
}
$src->safe_psql('postgres', 'CREATE ROLE source_only');
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.pk1 (a int PRIMARY KEY);
CREATE TABLE public.pk2 (b int PRIMARY KEY);
INSERT INTO public.pk1 SELECT generate_series(0, 99);
INSERT INTO public.pk2 SELECT generate_series(0, 99);
CREATE TABLE public.fk_partitioned_fk (a int, b int, at int) PARTITION BY RANGE (at);
ALTER TABLE public.fk_partitioned_fk ADD CONSTRAINT fk_one FOREIGN KEY (a) REFERENCES public.pk1;
ALTER TABLE public.fk_partitioned_fk ADD CONSTRAINT fk_two FOREIGN KEY (b) REFERENCES public.pk2;
-- attached with keys of its own name
CREATE TABLE public.fk_partitioned_fk_4 (a int, b int, at int,
  FOREIGN KEY (a) REFERENCES public.pk1, FOREIGN KEY (b) REFERENCES public.pk2);
ALTER TABLE public.fk_partitioned_fk ATTACH PARTITION public.fk_partitioned_fk_4 FOR VALUES FROM (0) TO (10);
-- renamed after creation
CREATE TABLE public.fk_partitioned_fk_5 PARTITION OF public.fk_partitioned_fk FOR VALUES FROM (10) TO (20);
ALTER TABLE public.fk_partitioned_fk_5 RENAME CONSTRAINT fk_one TO "Renamed one";
-- swapped names on one partition
CREATE TABLE public.fk_partitioned_fk_6 (a int, b int, at int,
  CONSTRAINT fk_two FOREIGN KEY (a) REFERENCES public.pk1,
  CONSTRAINT fk_one FOREIGN KEY (b) REFERENCES public.pk2);
ALTER TABLE public.fk_partitioned_fk ATTACH PARTITION public.fk_partitioned_fk_6 FOR VALUES FROM (20) TO (30);
-- a second level, attached with its own names
CREATE TABLE public.fk_partitioned_fk_7 (a int, b int, at int,
  CONSTRAINT level2_a FOREIGN KEY (a) REFERENCES public.pk1,
  CONSTRAINT level2_b FOREIGN KEY (b) REFERENCES public.pk2) PARTITION BY RANGE (at);
CREATE TABLE public.fk_partitioned_fk_7_1 (a int, b int, at int,
  CONSTRAINT leaf_a FOREIGN KEY (a) REFERENCES public.pk1);
ALTER TABLE public.fk_partitioned_fk_7 ATTACH PARTITION public.fk_partitioned_fk_7_1 FOR VALUES FROM (30) TO (35);
ALTER TABLE public.fk_partitioned_fk ATTACH PARTITION public.fk_partitioned_fk_7 FOR VALUES FROM (30) TO (40);
INSERT INTO public.fk_partitioned_fk SELECT i % 100, i % 100, i % 35 FROM generate_series(1, 1000) AS i;

-- item 6: columns added to parents after their children were created
CREATE TABLE public.a_star (class char, a int DEFAULT 5 CHECK (a > 0), gone int);
CREATE TABLE public.b_star (bb text NOT NULL DEFAULT 'x;
y') INHERITS (public.a_star);
CREATE TABLE public.c_star (cc name) INHERITS (public.a_star);
CREATE TABLE public.d_star (dd float8) INHERITS (public.b_star, public.c_star);
CREATE TABLE public.e_star () INHERITS (public.c_star);
ALTER TABLE public.a_star ADD COLUMN aa int NOT NULL DEFAULT 7;
ALTER TABLE public.a_star DROP COLUMN gone;
ALTER TABLE public.c_star ADD COLUMN "Odd, col" text COLLATE "C" DEFAULT 'q';
ALTER TABLE public.c_star ADD CONSTRAINT cc_set CHECK (cc IS NOT NULL OR class = 'n');
CREATE TABLE public.p2 (id serial, g int GENERATED ALWAYS AS (id * 2) STORED);
CREATE TABLE public.multi (own text) INHERITS (public.a_star, public.p2);
ALTER TABLE public.p2 ADD COLUMN late int;
-- pg_dump keeps these orders: a child made after the parent's last column,
-- and e_star, whose only parent c_star is recreated in the source's order
CREATE TABLE public.in_order (x int) INHERITS (public.p2);
-- a column of its own that the parent has NOT NULL: pg_dump leaves the
-- NOT NULL out of the child's CREATE TABLE (it comes with INHERITS); made
-- in the source's order, the child needs it before INHERIT (the
-- regression suite's gtestxx_4, e2e 096)
CREATE TABLE public.nn_parent (a int NOT NULL);
CREATE TABLE public.nn_child (b int GENERATED ALWAYS AS (a * 2) STORED, a int NOT NULL);
ALTER TABLE public.nn_child INHERIT public.nn_parent;
INSERT INTO public.nn_child (a) VALUES (21);
CREATE VIEW public.b_view AS SELECT * FROM public.b_star;
INSERT INTO public.b_star VALUES ('b', 1, 'two', 3);
INSERT INTO public.d_star VALUES ('d', 2, 'b', 'c', 2.5, 4, 'odd');
INSERT INTO public.e_star VALUES ('e', 3, 'c', 5, 'odd');
INSERT INTO public.multi (class, a, own, late) VALUES ('m', 4, 'own', 9);

ALTER DATABASE app SET bytea_output = 'escape';
ALTER DATABASE app SET timezone_abbreviations = 'India';
ALTER DATABASE app SET search_path = public, "$user", "odd ""schema""";
ALTER DATABASE app SET lc_monetary = 'C';
ALTER ROLE reporter IN DATABASE app SET work_mem = '12MB';
ALTER ROLE source_only IN DATABASE app SET work_mem = '13MB';
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO reporter;
GRANT CONNECT, TEMPORARY ON DATABASE app TO auditor WITH GRANT OPTION;
GRANT CONNECT ON DATABASE app TO source_only;
COMMENT ON DATABASE app IS 'the application''s data';
SQL

my $constraints = <<'SQL';
SELECT format('%s %s -> %s parent %s', k.conrelid::regclass, k.conname, k.confrelid::regclass,
  coalesce((SELECT p.conname FROM pg_constraint p WHERE p.oid = k.conparentid), '-'))
FROM pg_constraint k WHERE k.contype = 'f' AND k.connamespace::regnamespace::text <> 'pgrelocate' ORDER BY 1
SQL
my $settings = <<'SQL';
SELECT coalesce(r.rolname, '(all roles)') || ': ' || array_to_string(s.setconfig, ' | ')
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE d.datname = current_database() ORDER BY 1
SQL
my $acl = <<'SQL';
SELECT coalesce(string_agg(format('%s %s%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
  a.privilege_type, CASE WHEN a.is_grantable THEN ' (grantable)' ELSE '' END), ', '
  ORDER BY a.n), '(none)')
FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n)
WHERE d.datname = current_database() AND a.grantee <> d.datdba
SQL
my $columns = <<'SQL';
SELECT c.oid::regclass || ': ' || string_agg(format('%s%s%s', a.attname, CASE WHEN a.attislocal THEN '' ELSE '*' END,
  a.attinhcount), ', ' ORDER BY a.attnum)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' GROUP BY c.oid ORDER BY 1
SQL
my $checks = <<'SQL';
SELECT format('%s %s local %s inherited %s: %s', conrelid::regclass, conname, conislocal, coninhcount,
  pg_get_constraintdef(oid)) FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace ORDER BY 1
SQL
my $rows = <<'SQL';
SELECT 'a_star ' || a::text FROM ONLY public.a_star a UNION ALL SELECT 'b_star ' || b::text FROM ONLY public.b_star b
UNION ALL SELECT 'c_star ' || c::text FROM ONLY public.c_star c UNION ALL SELECT 'd_star ' || d::text FROM public.d_star d
UNION ALL SELECT 'e_star ' || e::text FROM public.e_star e UNION ALL SELECT 'multi ' || m::text FROM public.multi m
UNION ALL SELECT 'b_view ' || v::text FROM public.b_view v
UNION ALL SELECT 'nn_child ' || n::text FROM public.nn_child n ORDER BY 1
SQL
my $inserts = <<'SQL';
INSERT INTO public.b_star VALUES ('B', 10, 'ten', 11);
INSERT INTO public.d_star VALUES ('D', 12, 'bb', 'cc', 1.5, 13, 'odd');
INSERT INTO public.e_star VALUES ('E', 14, 'cc', 15, 'odd');
INSERT INTO public.multi VALUES ('M', 16, 17, 1000, DEFAULT, 'own', 18);
SQL
my $comment = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()";

my $src_constraints = RelocateTest::query($src, $db, $constraints);
like($src_constraints, qr/fk_partitioned_fk_6 fk_two -> pk1 parent fk_one/, 'source: the swapped names are there');

my %conn = (source => $src->connstr($db), target => $tgt->connstr($db));
{
	my $c = RelocateTest::run_copy(%conn, command => 'check', args => ['--json']);
	my $doc = eval { JSON::PP->new->decode($c->{stdout}) } // {};
	my ($item) = grep { $_->{name} eq 'source.database_settings' } @{ $doc->{checks} // [] };
	is($item->{status}, 'PASS', 'check: database settings are carried, not a problem');
	like($item->{message}, qr/^8 database-level settings: .*bytea_output=escape.*comment.*privileges .*role reporter: work_mem=12MB.*role source_only: work_mem=13MB/,
		'check: lists the settings, the ACL and the comment');
	($item) = grep { $_->{name} eq 'tables.column_order' } @{ $doc->{checks} // [] };
	is($item->{status}, 'PASS', 'check: inheriting tables whose column order pg_dump changes are recreated');
	like($item->{message}, qr/^5 tables: public\.b_star, public\.c_star, public\.d_star, public\.multi, public\.nn_child: pg_dump would put their inherited columns first; copy and start create them in the source's column order$/,
		'check: names them, and not the table whose order pg_dump keeps');
}
# a target role that is no superuser cannot set attislocal: check says so
$tgt->safe_psql('postgres', "CREATE ROLE plain LOGIN; GRANT CREATE ON DATABASE $db TO plain");
{
	my $c = RelocateTest::run_copy(source => $conn{source}, target => $conn{target} . ' user=plain',
		command => 'check', args => ['--json']);
	my $doc = eval { JSON::PP->new->decode($c->{stdout}) } // {};
	my ($item) = grep { $_->{name} eq 'tables.column_order' } @{ $doc->{checks} // [] };
	is($item->{status}, 'WARN', 'check, no superuser on the target: the column order is a warning');
	like($item->{message}, qr/^5 tables: .*needs a superuser on the target, which this role is not/,
		'check, no superuser on the target: says why');
}
my $r = RelocateTest::copy_ok('copy', %conn);
is(RelocateTest::query($tgt, $db, $constraints), $src_constraints,
	'item 7: every foreign key of every partition has the source\'s name');
is(RelocateTest::query($tgt, $db, $settings), join("\n",
		'(all roles): bytea_output=escape | timezone_abbreviations=India | search_path=public, "$user", "odd ""schema""" | lc_monetary=C',
		'reporter: work_mem=12MB'),
	'item 8: database settings and the role setting of a role the target has');
is(RelocateTest::query($src, $db, $acl), 'reporter CONNECT, auditor TEMPORARY (grantable), auditor CONNECT (grantable), source_only CONNECT',
	'source: the database ACL');
is(RelocateTest::query($tgt, $db, $acl), 'reporter CONNECT, auditor TEMPORARY (grantable), auditor CONNECT (grantable)',
	'item 8: the database ACL, but for the role the target lacks');
is(RelocateTest::query($tgt, $db, $comment), "the application's data", 'item 8: the database comment');
my $src_columns = RelocateTest::query($src, $db, $columns);
like($src_columns, qr/^b_star: class\*1, a\*1, bb0, aa\*1$/m, 'source: b_star has its own column before an inherited one');
like($src_columns, qr/^nn_child: b0, a1$/m, 'source: nn_child has a local and inherited NOT NULL column last');
is(RelocateTest::query($tgt, $db, $columns), $src_columns,
	'item 6: every table has the source\'s columns in the source\'s order, inherited and local alike');
is(RelocateTest::query($tgt, $db, $checks), RelocateTest::query($src, $db, $checks),
	'item 6: check constraints inherited and local as on the source');
is(RelocateTest::query($tgt, $db, $rows), RelocateTest::query($src, $db, $rows), 'item 6: SELECT * gives the same rows');
for my $node ($src, $tgt) { $node->safe_psql($db, $inserts); }
is(RelocateTest::query($tgt, $db, $rows), RelocateTest::query($src, $db, $rows),
	'item 6: INSERT without a column list stores the same rows');
like($r->{stderr}, qr/settings of roles the target does not have were not carried: source_only \(work_mem\)/,
	'item 8: the role setting left out is named');
like($r->{stderr}, qr/privileges of roles the target does not have were not carried: source_only \(CONNECT\)/,
	'item 8: the privilege of a role the target lacks is named, not dropped silently');

# verify compares them: equal after the copy, a change on the target found
{
	my $v = RelocateTest::run_copy(%conn, command => 'verify');
	like($v->{stdout}, qr/^schema differences \(2\):\n  database privileges: different\n      source: [^\n]*, source_only CONNECT\n      target: reporter CONNECT, auditor TEMPORARY WITH GRANT OPTION, auditor CONNECT WITH GRANT OPTION\n  database setting role source_only work_mem: missing on target$/m,
		'verify: only the privilege and the setting of the role the target lacks differ') or diag($v->{stdout} . $v->{stderr});
	$tgt->safe_psql($db, "ALTER DATABASE app SET bytea_output = 'hex'; COMMENT ON DATABASE app IS 'other'");
	$v = RelocateTest::run_copy(%conn, command => 'verify');
	is($v->{exit}, 3, 'verify: exit 3 after the change');
	like($v->{stdout}, qr/^  database setting bytea_output: different\n      source: escape\n      target: hex$/m,
		'verify: names the changed setting with both values');
	like($v->{stdout}, qr/^  database comment: different$/m, 'verify: names the changed comment');
}
done_testing();

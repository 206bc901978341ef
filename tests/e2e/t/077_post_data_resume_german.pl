# Post-data resumed after kill -9 on a target whose server speaks German
# (lc_messages = de_DE.UTF-8; issues 12 and 15): entries that committed
# before the kill but were not recorded in pgrelocate.post_data fail with
# "existiert bereits" on the resume, and count as done because pgrelocate
# judges them by SQLSTATE (42P07, 42710, 42P16), not by English text.
#
# The copy is killed while a slow expression index builds (after other
# entries were recorded); then the records of the entries done are deleted,
# as a kill between an entry's commit and its record would leave them.
# copy --resume finishes without an error and the target equals the source,
# schema included.
#
# B. A table owned by a role the target lacks: the pre-data fails with the
#    server's German message and the hint to create the roles (chosen by
#    SQLSTATE 42704, not by the English "role ... does not exist").
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE FUNCTION public.slow(int) RETURNS int IMMUTABLE LANGUAGE plpgsql
  AS $$BEGIN PERFORM pg_catalog.pg_sleep(0.02); RETURN $1; END$$;
CREATE TABLE public.parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.child (
  id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent (id),
  code text NOT NULL, CONSTRAINT child_code_ok CHECK (code <> ''));
CREATE UNIQUE INDEX child_code_key ON public.child (code);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql
  AS $$BEGIN NEW.code := NEW.code; RETURN NEW; END$$;
CREATE TRIGGER child_touch BEFORE UPDATE ON public.child FOR EACH ROW EXECUTE FUNCTION public.touch();
COMMENT ON INDEX public.child_code_key IS 'one code per child';
INSERT INTO public.parent SELECT i, 'p' || i FROM generate_series(1, 500) i;
INSERT INTO public.child SELECT i, i, 'c' || i FROM generate_series(1, 500) i;
CREATE INDEX parent_slow_idx ON public.parent (public.slow(id));
});

$tgt->safe_psql('postgres', "ALTER SYSTEM SET lc_messages = 'de_DE.UTF-8'");
$tgt->reload;
ok($tgt->poll_query_until('postgres', "SELECT current_setting('lc_messages') = 'de_DE.UTF-8'"),
	'the target speaks German');

my %conn = (source => $src->connstr($db), target => $tgt->connstr($db));
my $run = RelocateTest::start_copy(%conn, args => [ '--jobs', '2' ]);
ok(RelocateTest::wait_until($tgt, $db, q{
SELECT (SELECT count(*) FROM pgrelocate.post_data) > 0
   AND EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE '%parent_slow_idx%' AND pid <> pg_backend_pid())},
	't', 120), 'the copy is in post-data: entries recorded, the slow index building')
  or diag(${ $run->{stderr} });
kill 'KILL', $run->{pid};
my $killed = RelocateTest::finish_copy($run);
is($killed->{signal}, 9, 'pgrelocate was killed by SIGKILL in post-data');

my $recorded = RelocateTest::query($tgt, $db, 'SELECT count(*) FROM pgrelocate.post_data');
ok($recorded > 0, "$recorded post-data entries were recorded before the kill");
$tgt->safe_psql($db, 'DELETE FROM pgrelocate.post_data');

# the server's words for it are German: no English to match
my (undef, undef, $err) = $tgt->psql($db, 'ALTER TABLE public.parent ADD CONSTRAINT parent_pkey PRIMARY KEY (id)');
like($err, qr/mehrere Primärschlüssel|existiert bereits/, 'a repeated entry fails in German');

my $r = RelocateTest::copy_ok('copy --resume', %conn, args => [ '--resume', '--jobs', '2' ]);
unlike($r->{stderr}, qr/error:/, 'the resume reports no error');
is(RelocateTest::query($tgt, $db, 'SELECT phase FROM pgrelocate.migration'), 'done', 'the copy is done');
is(RelocateTest::query($tgt, $db,
	q{SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index
	  WHERE indrelid IN ('public.parent'::regclass, 'public.child'::regclass)}),
	'child_code_key,child_pkey,parent_pkey,parent_slow_idx', 'every index is there once');
RelocateTest::compare_databases($src, $tgt, $db);

# B: a missing role
$src->safe_psql('postgres', 'CREATE ROLE only_on_source');
$src->safe_psql($db, 'CREATE TABLE public.owned (id int); ALTER TABLE public.owned OWNER TO only_on_source');
$tgt->safe_psql('postgres', 'CREATE DATABASE app2');
RelocateTest::copy_fails_like(
	'B: missing role',
	[
		qr/\[schema\] restoring the pre-data schema on the target: Rolle .*only_on_source.* existiert nicht/,
		qr/HINT:\s+If it names a role, create the source's roles on the target first \(pg_dumpall --roles-only\), or run with --no-owner --no-acl\./
	],
	source => $src->connstr($db),
	target => $tgt->connstr('app2'));
is(RelocateTest::query($tgt, 'app2', q{SELECT count(*) FROM pg_class WHERE relname = 'owned'}), '0',
	'B: nothing of the pre-data stays on the target');

done_testing();

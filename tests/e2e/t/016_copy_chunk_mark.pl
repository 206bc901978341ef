# A chunk is marked done in the transaction that copies it, by an UPDATE
# that must touch exactly its one row of pgrelocate.chunks.  When it touches
# none (here a trigger on the target swallows the update), the copy stops
# with "updated 0 rows ..., expected 1" (not "unexpected result status
# PGRES_COMMAND_OK"), and neither the rows nor a done mark are committed.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
$src->safe_psql('app', <<'SQL');
CREATE TABLE public.items (id int PRIMARY KEY, note text);
INSERT INTO public.items SELECT i, 'n' || i FROM generate_series(1, 500) AS i;
SQL
# As soon as start creates pgrelocate.chunks, a trigger makes every update
# that marks a chunk done touch no row.  The functions live in
# information_schema, which the "target is empty" check leaves alone.
$tgt->safe_psql('app', <<'SQL');
CREATE FUNCTION information_schema.test_skip_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'done' THEN RETURN NULL; END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION information_schema.test_on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_catalog.to_regclass('pgrelocate.chunks') IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = 'test_skip_done') THEN
    CREATE TRIGGER test_skip_done BEFORE UPDATE ON pgrelocate.chunks
      FOR EACH ROW EXECUTE FUNCTION information_schema.test_skip_done();
  END IF;
END $$;
CREATE EVENT TRIGGER test_on_ddl ON ddl_command_end EXECUTE FUNCTION information_schema.test_on_ddl();
SQL

my $r = RelocateTest::copy_fails_like(
	'the done mark touches no row',
	[ qr/\[copy public\.items[^\]]*\] marking the chunk done updated 0 rows of pgrelocate\.chunks, expected 1/ ],
	source => $src->connstr('app'),
	target => $tgt->connstr('app'),
	args   => [ '--jobs', '1' ]);
unlike($r->{stderr}, qr/unexpected result status/, 'no "unexpected result status" message');
is(RelocateTest::query($tgt, 'app', 'SELECT count(*) FROM public.items'),
	'0', 'the chunk\'s rows were not committed without their done mark');
is(RelocateTest::query($tgt, 'app', "SELECT string_agg(state, ',') FROM pgrelocate.chunks"),
	'pending', 'the chunk is still pending');

done_testing();

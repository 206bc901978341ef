# Copyright: pgrelocate authors.  Shared helpers for the end-to-end TAP tests.

=pod

=head1 NAME

RelocateTest - source/target cluster pairs, a rich source schema, exact
source-vs-target comparison and wrappers to run C<pgrelocate> in TAP tests

=head1 SYNOPSIS

  use PostgreSQL::Test::Utils;
  use Test::More;
  use RelocateTest;

  my ($src, $tgt) = RelocateTest::new_pair(name => 'rich', dbname => 'app');
  RelocateTest::load_rich_schema($src, 'app');
  RelocateTest::copy_ok('copy',
      source => $src->connstr('app'), target => $tgt->connstr('app'),
      args   => [ '--jobs', 4 ]);
  RelocateTest::compare_databases($src, $tgt, 'app');
  done_testing();

=head1 DESCRIPTION

Everything here runs real servers through L<PostgreSQL::Test::Cluster> (PG 15
API).  Comparisons always run the same ordered query on both sides; waiting
is done by polling, never by sleeping a fixed time.

The tool under test is C<$ENV{PGRELOCATE}> (set by scripts/run-e2e.sh).  For
work on this harness alone, C<RELOCATE_TEST_FAKE_COPY=1> makes C<run_copy>
pipe C<pg_dump -Fc | pg_restore> instead of running the tool (no state
schema, no ANALYZE: the tool-specific assertions then fail, as they must).

=cut

package RelocateTest;

use strict;
use warnings;

use Carp;
use File::Temp ();
use IPC::Run ();
use JSON::PP ();
use Time::HiRes qw(usleep);
use Test::More;

BEGIN
{
	# Cluster->init runs "$PG_REGRESS --config-auth", which does nothing but
	# exit 0 on Unix; Debian ships the binary under pgxs.
	$ENV{PG_REGRESS} //=
	  '/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress';
}

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

# Schemas that never hold user data: compared neither as tables nor in the
# schema dump.  The tool's own state schema is on this list.
our @SYSTEM_SCHEMAS = qw(pg_catalog information_schema pgrelocate);
our $STATE_SCHEMA   = 'pgrelocate';

# Every comparison query runs with these settings, so that values print
# exactly and the same way on both sides.
our $SESSION_SETUP = join "\n",
  "SET extra_float_digits = 3;",
  "SET TimeZone = 'UTC';",
  "SET DateStyle = 'ISO, YMD';",
  "SET IntervalStyle = 'postgres';",
  "SET bytea_output = 'hex';",
  "SET work_mem = '64MB';",
  "SET statement_timeout = 0;";

my $FS = "\x1f";    # field separator of our psql output
my $JSON = JSON::PP->new->utf8(0)->allow_nonref;

=pod

=head1 CLUSTERS

=over

=item new_pair(%opts) => ($source, $target)

Init and start a source and a target cluster, and create the database(s).

  name         prefix of the node names (default: caller's script name)
  dbname       database created on both nodes (default 'app'); may be an
               array ref of names
  source_conf  extra postgresql.conf lines for the source
  source_tcp   the source also listens on 127.0.0.1, and FollowTest::conn
               gives the tool a TCP connection string for it
  target_conf  extra postgresql.conf lines for the target
  roles        create the shared roles of create_roles() (default 1)
  source_major PostgreSQL major version of the source (default: Debian's
               15); other majors come from the cache that
               scripts/pg-versions.sh fills (see install_path())
  target_major the same for the target

The source runs with wal_level=logical and 10 slots and WAL senders (what
the follow phase will need); both run with fsync off, modest memory and no
autovacuum (so that planner statistics on the target can only come from the
tool's ANALYZE).

=cut

sub new_pair
{
	my (%opts) = @_;
	my $name = $opts{name} // do
	{
		my $n = $0;
		$n =~ s{.*/}{};
		$n =~ s{\.pl$}{};
		$n =~ s{[^A-Za-z0-9]+}{_}g;
		$n;
	};
	my @dbs =
	  ref $opts{dbname} ? @{ $opts{dbname} } : ($opts{dbname} // 'app');

	my $common = join "\n",
	  'shared_buffers = 64MB',
	  'work_mem = 8MB',
	  'maintenance_work_mem = 128MB',
	  'max_connections = 40',
	  'max_wal_size = 2GB',
	  'synchronous_commit = off',
	  'full_page_writes = off',
	  'autovacuum = off',
	  'log_statement = none',
	  'log_min_duration_statement = 1000',
	  'log_connections = on',
	  'log_disconnections = on',
	  'lc_messages = C';

	my $src = PostgreSQL::Test::Cluster->new("${name}_source",
		install_path($opts{source_major}));
	$src->init(allows_streaming => 'logical');
	$src->append_conf('postgresql.conf',
		join "\n", $common,
		'wal_level = logical',
		'max_replication_slots = 10',
		'max_wal_senders = 10',
		($opts{source_tcp} ? "listen_addresses = '127.0.0.1'" : ''),
		$opts{source_conf} // '');
	# the tool then reaches the source over TCP (FollowTest::conn), as in
	# production, where the stream's socket options take effect
	$src->{pgr_tcp} = 1 if $opts{source_tcp};

	my $tgt = PostgreSQL::Test::Cluster->new("${name}_target",
		install_path($opts{target_major}));
	$tgt->init(allows_streaming => 'logical');
	$tgt->append_conf('postgresql.conf',
		join "\n", $common, $opts{target_conf} // '');

	for my $node ($src, $tgt)
	{
		$node->start;
		create_roles($node) if $opts{roles} // 1;
		for my $db (@dbs)
		{
			$node->safe_psql('postgres',
				'CREATE DATABASE ' . quote_ident($db));
		}
	}
	return ($src, $tgt);
}

=pod

=item install_path($major) => (install_path => $dir) or ()

The arguments for PostgreSQL::Test::Cluster->new that give a node the
server of that major: none for Debian's 15 (or no major), else the cache
that scripts/pg-versions.sh fills ($ENV{PGRELOCATE_PG_VERSIONS}, set by
scripts/run-e2e.sh).  A missing install bails out with the command that
makes it.  When a major newer than 15 is asked for, the newest client
programs of the cache go first on PATH, for the tool's pg_dump and the
test's own (pg_dump cannot read a newer server).

=cut

sub install_path
{
	my ($major) = @_;
	return () if !defined $major || $major == 15;
	my $cache = $ENV{PGRELOCATE_PG_VERSIONS}
	  // BAIL_OUT('PGRELOCATE_PG_VERSIONS is not set (scripts/run-e2e.sh sets it)');
	my $dir = "$cache/$major";
	BAIL_OUT("no PostgreSQL $major in $cache: run scripts/pg-versions.sh $major")
	  unless -x "$dir/bin/postgres";
	if ($major > 15)
	{
		my $client = client_bin();
		BAIL_OUT("no client programs of $major or newer in $cache: "
			  . "run scripts/pg-versions.sh client 18")
		  unless $client && $client =~ m{/client-(\d+)/bin$} && $1 >= $major;
		$ENV{PATH} = "$client:$ENV{PATH}" unless index($ENV{PATH}, $client) == 0;
	}
	return (install_path => $dir);
}

=pod

=item client_bin() => $dir or undef

The bin directory of the newest client programs in the cache of
scripts/pg-versions.sh (client-NN/bin), if any.

=cut

sub client_bin
{
	my $cache = $ENV{PGRELOCATE_PG_VERSIONS} // return undef;
	my @dirs = sort { ($b =~ /client-(\d+)/)[0] <=> ($a =~ /client-(\d+)/)[0] }
	  grep { -x "$_/pg_dump" } glob("$cache/client-*/bin");
	return $dirs[0];
}

=pod

=item create_roles($node)

Create the roles the rich schema grants to and owns objects by
(C<app_reader>, C<app_writer>).  Roles are cluster-wide and a database copy
does not carry them, so a user creates them on the target first; tests do
the same on both nodes.

=cut

sub create_roles
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		'CREATE ROLE app_reader NOLOGIN; CREATE ROLE app_writer NOLOGIN;');
	return;
}

=pod

=item enable_password_auth($node, $role, $password)

Create a login role with a SCRAM password and make every connection of
that role (socket and TCP) authenticate with scram-sha-256; the rest stays
trusted.  Reloads the configuration.

=cut

sub enable_password_auth
{
	my ($node, $role, $password) = @_;
	$node->safe_psql('postgres',
		    "SET password_encryption = 'scram-sha-256';"
		  . 'CREATE ROLE '
		  . quote_ident($role)
		  . ' LOGIN PASSWORD '
		  . quote_literal($password) . ';');
	my $hba = $node->data_dir . '/pg_hba.conf';
	my $old = slurp_file($hba);
	open my $fh, '>', $hba or die "cannot write $hba: $!";
	print $fh "local all $role scram-sha-256\n";
	print $fh "host all $role 127.0.0.1/32 scram-sha-256\n";
	print $fh $old;
	close $fh;
	$node->reload;
	return;
}

=pod

=item closed_port()

A TCP port on 127.0.0.1 on which nothing listens (for "unreachable host").

=cut

sub closed_port
{
	return PostgreSQL::Test::Cluster::get_free_port();
}

=pod

=back

=head1 THE RICH SOURCE SCHEMA

=over

=item load_rich_schema($node, $db, %opts)

Create and fill the schema of issue 2 in C<$db>.  Needs create_roles() on
the node (new_pair does it).  C<big_rows> (default 200_000) sizes
C<inventory.big>, the table meant to be split into several ctid chunks by a
small C<--split-larger-than> (200k rows are about 20 MB).

Objects (each is something a copier can get wrong):

  public.no_pk                 no primary key, duplicate rows (also all-NULL ones)
  public.floats                float8/real edge values, one per row: NaN, +-Infinity,
                               -0, 0.1+0.2, 5e-324, 1.7976931348623157e308, ...
  public.numerics              numeric NaN, +-Infinity, scale 999, 1000 digits
  public.temporal              timestamptz/timestamp/date +-infinity, BC, year
                               294276, time 24:00, timetz offsets, intervals
  inventory.kinds              uuid, enum, domain, composite, arrays (NULL
                               elements, multi-dim, non-default lower bound,
                               arrays of an enum and of a composite), ranges
                               (incl. empty, a custom float8 range), jsonb, json
                               (whitespace and duplicate keys kept), citext,
                               inet, varbit, a C collation column, a dropped
                               column and a column added later with a default
  public.blobs                 bytea NULL, 0 B, 1 B, 2000 B, 1 MiB, 20 MiB (random)
  public.customers             identity column advanced to 5,000,000, unique,
                               check, row level security policy
  inventory.orders             bigserial advanced to 123,456,789, FK, triggers (a
                               BEFORE trigger that edits the row and an AFTER
                               trigger that writes inventory.audit: if the target
                               fires them during the copy, data differ), a NOT
                               VALID check violated by one row, a NOT VALID FK
                               with one orphan
  public.t, public."T", public."select" (columns "from", "it's a \ col;",
  a name with a newline), a table named with 63 bytes
  public."Order ""Items"" ü"   quotes, spaces, upper case, unicode, column
                               "Weird col;--", a stored generated column
                               total = qty * price, deferrable FK
  "Sales ""EU"" ß".events      range-partitioned (2023, 2024, default), jsonb gin
                               index on the parent
  inventory.big                many rows (split), brin, gin, expression and
                               partial indexes, extended statistics, a legacy
                               inheritance child inventory.big_archive
  inventory.customer_totals    materialized view (with a unique index)
  public.open_orders           view
  public.order_total()         SQL function; trigger functions in plpgsql
  sequences                    public.invoice_no (987654321, increment 7),
                               inventory.reset_seq (777, is_called false),
                               inventory.never_used (never called),
                               public.countdown (descending, cycling)
  large objects                100001 empty, 100002 small (owner app_writer,
                               granted to app_reader), 100003 1.5 MiB (comment),
                               one with a server-assigned oid
  comments, grants, default privileges, an extension (citext)

=cut

sub load_rich_schema
{
	my ($node, $db, %opts) = @_;
	my $big_rows = $opts{big_rows} // 200_000;

	$node->safe_psql($db, <<'SQL');
CREATE EXTENSION citext;
CREATE SCHEMA inventory;
CREATE SCHEMA "Sales ""EU"" ß";
COMMENT ON SCHEMA inventory IS 'stock, orders and the big table';

CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN public.positive_int AS integer CONSTRAINT positive CHECK (VALUE > 0);
CREATE TYPE inventory.dims AS (w numeric, h float8, label text);
CREATE TYPE public.floatrange AS RANGE (subtype = float8);
COMMENT ON TYPE public.mood IS 'how an order feels';

-- A table without primary key holding duplicate rows.
CREATE TABLE public.no_pk (a int, b text, c float8, d jsonb);
INSERT INTO public.no_pk VALUES
  (1, 'dup', 1.5, '{"k": 1}'), (1, 'dup', 1.5, '{"k": 1}'), (1, 'dup', 1.5, '{"k": 1}'),
  (2, NULL, NULL, NULL), (2, NULL, NULL, NULL),
  (NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL),
  (3, '', 'NaN', 'null');

-- float8 and real edge values, one per row.
CREATE TABLE public.floats (id int PRIMARY KEY, label text NOT NULL, f8 float8, f4 real);
INSERT INTO public.floats VALUES
  (1, 'NaN', 'NaN', 'NaN'),
  (2, '+Infinity', 'Infinity', 'Infinity'),
  (3, '-Infinity', '-Infinity', '-Infinity'),
  (4, '-0', '-0', '-0'),
  (5, '+0', 0, 0),
  (6, '0.1+0.2', 0.1::float8 + 0.2::float8, 0.1::real + 0.2::real),
  (7, 'smallest subnormal', '5e-324', '1e-45'),
  (8, 'largest', '1.7976931348623157e308', '3.4028235e38'),
  (9, 'smallest normal', '2.2250738585072014e-308', '1.17549435e-38'),
  (10, '1/3', 1::float8 / 3, 1::real / 3),
  (11, 'NULL', NULL, NULL),
  (12, 'pi', pi(), pi()::real),
  (13, '-subnormal', '-4.9406564584124654e-324', '-1.4e-45');

CREATE TABLE public.numerics (id int PRIMARY KEY, n numeric, n_fixed numeric(20, 10));
INSERT INTO public.numerics VALUES
  (1, 'NaN', NULL),
  (2, 'Infinity', 0),
  (3, '-Infinity', -0.0000000001),
  (4, ('0.' || repeat('0', 990) || '123456789')::numeric, 1234567890.0123456789),
  (5, repeat('9', 1000)::numeric, -9999999999.9999999999),
  (6, '-0.000000', 0.1),
  (7, 1::numeric / 3, 1::numeric / 3);

CREATE TABLE public.temporal (
  id int PRIMARY KEY, tstz timestamptz, ts timestamp, d date, t time, ttz timetz, iv interval);
INSERT INTO public.temporal VALUES
  (1, 'infinity', 'infinity', 'infinity', '00:00', '00:00+00', '0'),
  (2, '-infinity', '-infinity', '-infinity', '24:00:00', '23:59:59.999999-15:59', '-178000000 years'),
  (3, '2024-02-29 23:59:59.999999+05:45', '2024-02-29 23:59:59.999999', '2024-02-29',
      '12:34:56.789012', '12:00+15:59', '1 year 2 mons 3 days 04:05:06.789'),
  (4, '4713-01-01 00:00:00+00 BC', '4713-01-01 00:00:00 BC', '4713-01-01 BC',
      '00:00:00.000001', '00:00-00:30', '1 mon -1 days +00:00:00.000001'),
  (5, '294276-12-31 23:59:59.999999+00', '294276-12-31 23:59:59.999999', '5874897-12-31',
      '23:59:59.999999', '23:59:59+01', '178000000 years'),
  (6, NULL, NULL, NULL, NULL, NULL, NULL);

-- Every kind of value; a column dropped and one added later with a default.
CREATE TABLE inventory.kinds (
  id bigint PRIMARY KEY,
  u uuid NOT NULL,
  legacy text,
  m public.mood,
  p public.positive_int,
  dm inventory.dims,
  int_arr int[],
  txt_arr text[],
  mood_arr public.mood[],
  dims_arr inventory.dims[],
  r int4range,
  fr public.floatrange,
  tr tstzrange,
  jb jsonb,
  js json,
  ci citext,
  ip inet,
  bits varbit,
  c_coll text COLLATE "C"
);
INSERT INTO inventory.kinds VALUES
  (1, '00000000-0000-0000-0000-000000000000', 'x', 'sad', 1,
   ROW(1.5, 'NaN', 'a "quoted", label'),
   '{1,NULL,3}', '{"a,b","NULL",NULL,"\"q\"","",  "back\\slash"}',
   ARRAY['sad', NULL, 'it''s "complicated"']::public.mood[],
   ARRAY[ROW(1, 2, 'x')::inventory.dims, NULL, ROW(NULL, '-Infinity', NULL)::inventory.dims],
   'empty', '[-Infinity,0.5)', '[2020-01-01 00:00:00+00,infinity)',
   '{"b": [1, 2.50, {"c": null}], "a": "ü\u00e9", "big": 12345678901234567890.123}',
   '{"a": 1,   "a": 2, "b" : [1, 2 ],
     "unicode": "\u00fc"}',
   'MiXeD Case', '2001:db8::1/64', B'1010101', 'Zürich'),
  (2, 'ffffffff-ffff-ffff-ffff-ffffffffffff', NULL, 'it''s "complicated"', 2147483647,
   ROW(NULL, NULL, NULL),
   '{{1,2},{3,4}}', '{}',
   '{}', '{}',
   '(,5]', '[1.5,1.5]', '(,)',
   '[]', '[]', '', '0.0.0.0/0', B'', ''),
  (3, md5('3')::uuid, 'y', NULL, NULL, NULL,
   '[0:2]={7,8,9}', NULL, NULL, NULL,
   NULL, NULL, NULL,
   'null', 'null', NULL, NULL, NULL, NULL);
INSERT INTO inventory.kinds (id, u, m, p, dm, int_arr, txt_arr, r, jb, js, ci, c_coll)
SELECT i, md5('kinds' || i)::uuid, (ARRAY['sad', 'ok', 'happy']::public.mood[])[1 + i % 3], i,
       ROW(i / 7.0, (i * 0.1)::float8, 'label ' || i)::inventory.dims, ARRAY[i, i + 1, NULL], ARRAY['t' || i, NULL],
       int4range(i, i + 10),
       jsonb_build_object('i', i, 'arr', jsonb_build_array(i, 'x', i * 1.5), 'nested', jsonb_build_object('deep', i % 5 = 0)),
       json_build_object('i', i, 'f', i / 3.0), 'Name' || i, 'z' || i
FROM generate_series(4, 1000) AS i;
ALTER TABLE inventory.kinds DROP COLUMN legacy;
ALTER TABLE inventory.kinds ADD COLUMN added_later int DEFAULT 7;
CREATE INDEX kinds_jb_gin ON inventory.kinds USING gin (jb);

-- bytea from 0 bytes to 20 MiB, incompressible.
CREATE TABLE public.blobs (id int PRIMARY KEY, label text NOT NULL, data bytea);
INSERT INTO public.blobs VALUES (1, 'NULL', NULL), (2, '0 bytes', '\x'), (3, '1 byte', '\x00');
INSERT INTO public.blobs SELECT 4, '2000 bytes', substr(decode(string_agg(md5('b4' || i), '' ORDER BY i), 'hex'), 1, 2000)
  FROM generate_series(1, 125) AS i;
INSERT INTO public.blobs SELECT 5, '1 MiB', decode(string_agg(md5('b5' || i), '' ORDER BY i), 'hex')
  FROM generate_series(1, 65536) AS i;
INSERT INTO public.blobs SELECT 6, '20 MiB', decode(string_agg(md5('b6' || i), '' ORDER BY i), 'hex')
  FROM generate_series(1, 1310720) AS i;

-- Identity column advanced far beyond max(id); unique and check constraints.
CREATE TABLE public.customers (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  email citext NOT NULL,
  name text NOT NULL,
  CONSTRAINT customers_email_key UNIQUE (email),
  CONSTRAINT name_not_blank CHECK (name <> '')
);
INSERT INTO public.customers (email, name)
  SELECT 'c' || i || '@Example.com', 'Customer ' || i FROM generate_series(1, 500) AS i;
SELECT setval(pg_get_serial_sequence('public.customers', 'id'), 5000000);
ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY customers_read ON public.customers FOR SELECT TO app_reader USING (id > 0);

CREATE TABLE inventory.audit (id bigserial PRIMARY KEY, order_id bigint, what text NOT NULL);

CREATE TABLE inventory.orders (
  id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES public.customers (id) ON DELETE CASCADE,
  status public.mood NOT NULL DEFAULT 'ok',
  placed_at timestamptz NOT NULL,
  note text
);
CREATE FUNCTION inventory.orders_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.note := coalesce(NEW.note, '') || ' [marked]';
  RETURN NEW;
END $$;
CREATE FUNCTION inventory.orders_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO inventory.audit (order_id, what) VALUES (NEW.id, TG_OP);
  RETURN NULL;
END $$;
CREATE TRIGGER orders_mark BEFORE INSERT OR UPDATE ON inventory.orders
  FOR EACH ROW EXECUTE FUNCTION inventory.orders_mark();
CREATE TRIGGER orders_audit AFTER INSERT ON inventory.orders
  FOR EACH ROW EXECUTE FUNCTION inventory.orders_audit();
INSERT INTO inventory.orders (customer_id, status, placed_at, note)
  SELECT 1 + i % 500, (ARRAY['sad', 'ok', 'happy']::public.mood[])[1 + i % 3],
         timestamptz '2021-03-04 05:06:07.891011+00' + i * interval '37 minutes 1.5 seconds',
         CASE WHEN i % 4 = 0 THEN NULL ELSE 'note ' || i END
  FROM generate_series(1, 3000) AS i;
-- One row from before a NOT VALID check, and an orphan under a NOT VALID FK.
INSERT INTO inventory.orders (customer_id, placed_at, note) VALUES (7, '1999-12-31 23:59:59+00', 'legacy');
ALTER TABLE inventory.orders ADD CONSTRAINT placed_this_century CHECK (placed_at >= '2000-01-01') NOT VALID;
ALTER TABLE inventory.audit ADD CONSTRAINT audit_order_fk FOREIGN KEY (order_id)
  REFERENCES inventory.orders (id) NOT VALID;
INSERT INTO inventory.audit (order_id, what) VALUES (NULL, 'no order');
SELECT setval('inventory.orders_id_seq', 123456789);

CREATE TABLE public."Order ""Items"" ü" (
  order_id bigint NOT NULL REFERENCES inventory.orders (id) DEFERRABLE INITIALLY DEFERRED,
  line int NOT NULL,
  "Weird col;--" text,
  "UPPER Case" int,
  qty int NOT NULL,
  price numeric(12, 2) NOT NULL,
  total numeric GENERATED ALWAYS AS (qty * price) STORED,
  PRIMARY KEY (order_id, line)
);
INSERT INTO public."Order ""Items"" ü" (order_id, line, "Weird col;--", "UPPER Case", qty, price)
  SELECT o, l, CASE WHEN l = 1 THEN 'x''); DROP TABLE x; --' ELSE 'ligne ü ' || l END, o * l, l, (o % 100) + 0.99
  FROM generate_series(1, 3000) AS o, generate_series(1, 3) AS l;
COMMENT ON COLUMN public."Order ""Items"" ü"."Weird col;--" IS 'it''s weird; really';
COMMENT ON TABLE public."Order ""Items"" ü" IS 'order lines';

-- Hostile identifiers: case twins, a reserved word, quote, backslash,
-- semicolon, newline, 63 bytes of multi-byte characters.
CREATE TABLE public.t (id int PRIMARY KEY, v text);
CREATE TABLE public."T" (id int PRIMARY KEY, "V" text, v text);
CREATE TABLE public."select" ("from" int, "it's a \ col;" text, "line1
line2" text);
CREATE TABLE public."xüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüyz" (id int);
INSERT INTO public.t VALUES (1, 'lower');
INSERT INTO public."T" VALUES (1, 'UPPER', 'upper');
INSERT INTO public."select" VALUES (1, E'tab\there', E'new\nline'), (2, '\\N', 'a"b''c');
INSERT INTO public."xüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüyz" VALUES (63);

-- Range-partitioned table with a default partition.
CREATE TABLE "Sales ""EU"" ß".events (
  id bigint NOT NULL, happened date NOT NULL, payload jsonb,
  PRIMARY KEY (id, happened)
) PARTITION BY RANGE (happened);
CREATE TABLE "Sales ""EU"" ß".events_2023 PARTITION OF "Sales ""EU"" ß".events
  FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE "Sales ""EU"" ß".events_2024 PARTITION OF "Sales ""EU"" ß".events
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "Sales ""EU"" ß".events_default PARTITION OF "Sales ""EU"" ß".events DEFAULT;
INSERT INTO "Sales ""EU"" ß".events
  SELECT i, date '2022-09-01' + (i % 900),
         jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 7))
  FROM generate_series(1, 3000) AS i;
CREATE INDEX events_payload_gin ON "Sales ""EU"" ß".events USING gin (payload jsonb_path_ops);

-- Materialized view, view, function.
CREATE MATERIALIZED VIEW inventory.customer_totals AS
  SELECT o.customer_id, count(*) AS lines, sum(i.total) AS amount
  FROM inventory.orders AS o JOIN public."Order ""Items"" ü" AS i ON i.order_id = o.id
  GROUP BY o.customer_id;
CREATE UNIQUE INDEX customer_totals_customer ON inventory.customer_totals (customer_id);
CREATE VIEW public.open_orders AS
  SELECT id, customer_id, placed_at FROM inventory.orders WHERE status <> 'sad';
CREATE FUNCTION public.order_total(bigint) RETURNS numeric LANGUAGE sql STABLE
  AS $$ SELECT coalesce(sum(total), 0) FROM public."Order ""Items"" ü" WHERE order_id = $1 $$;
COMMENT ON FUNCTION public.order_total(bigint) IS 'sum of an order''s lines';

-- Sequences: far ahead, is_called = false, never used, descending.
CREATE SEQUENCE public.invoice_no START 1000 INCREMENT 7;
SELECT setval('public.invoice_no', 987654321);
CREATE SEQUENCE inventory.reset_seq;
SELECT setval('inventory.reset_seq', 777, false);
CREATE SEQUENCE inventory.never_used START 42;
CREATE SEQUENCE public.countdown INCREMENT -3 MINVALUE -1000 MAXVALUE 10 START 10 CYCLE;
SELECT nextval('public.countdown'), nextval('public.countdown'), nextval('public.countdown');

-- Large objects: empty, small with owner and grant, 1.5 MiB with a comment,
-- and one whose oid the server chose.
SELECT lo_from_bytea(100001, '\x');
SELECT lo_from_bytea(100002, convert_to('hello, large object', 'UTF8'));
SELECT lo_from_bytea(100003, (SELECT decode(string_agg(md5('lo' || i), '' ORDER BY i), 'hex')
                              FROM generate_series(1, 98304) AS i));
SELECT lo_from_bytea(0, '\xdeadbeef');
ALTER LARGE OBJECT 100002 OWNER TO app_writer;
GRANT SELECT ON LARGE OBJECT 100002 TO app_reader;
COMMENT ON LARGE OBJECT 100003 IS 'one and a half MiB';

-- Grants, owners, default privileges.
GRANT USAGE ON SCHEMA inventory TO app_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA inventory TO app_reader;
GRANT SELECT, INSERT (qty, price) ON public."Order ""Items"" ü" TO app_writer;
REVOKE EXECUTE ON FUNCTION public.order_total(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.order_total(bigint) TO app_reader;
ALTER TABLE public.floats OWNER TO app_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA inventory GRANT SELECT ON TABLES TO app_reader;
SQL

	# The big table: split into several chunks by a small --split-larger-than.
	$node->safe_psql($db, <<"SQL");
CREATE TABLE inventory.big (
  id bigint PRIMARY KEY,
  sku text NOT NULL,
  qty int NOT NULL,
  seen timestamptz NOT NULL,
  attrs jsonb
);
INSERT INTO inventory.big
  SELECT i, 'SKU-' || lpad(i::text, 8, '0'), i % 97,
         timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute',
         CASE WHEN i % 10 = 0 THEN jsonb_build_object('color', 'red', 'n', i) END
  FROM generate_series(1, $big_rows) AS i;
CREATE INDEX big_seen_brin ON inventory.big USING brin (seen);
CREATE INDEX big_attrs_gin ON inventory.big USING gin (attrs);
CREATE UNIQUE INDEX big_sku_lower ON inventory.big (lower(sku));
CREATE INDEX big_qty_partial ON inventory.big (qty) WHERE qty > 90;
ALTER TABLE inventory.big ALTER COLUMN sku SET STATISTICS 500;
CREATE STATISTICS inventory.big_qty_sku (dependencies, ndistinct) ON qty, sku FROM inventory.big;
-- A legacy inheritance child: copying "inventory.big" without ONLY would
-- duplicate these rows into the parent.
CREATE TABLE inventory.big_archive (archived_at timestamptz) INHERITS (inventory.big);
INSERT INTO inventory.big_archive
  SELECT 900000 + i, 'OLD-' || i, i, timestamptz '2019-01-01 00:00:00+00', NULL, now()
  FROM generate_series(1, 10) AS i;
GRANT SELECT ON inventory.big, inventory.big_archive TO app_reader;
SQL
	return;
}

=pod

=back

=head1 COMPARISON

=over

=item database_state($node, $db, %opts) => \%state

What a database holds, in a form equal for two databases that hold the same
things:

  tables         { 'schema.table' => { rows => N, digest => D } } for every
                 table (relkind r) and materialized view outside
                 @SYSTEM_SCHEMAS; D is a multiset hash of row::text of every
                 row (FROM ONLY): physical order does not count, duplicates
                 do (see _table_digest_expr)
  sequences      { 'schema.seq' => 'last_value is_called' }
  large_objects  [ 'oid owner acl comment bytes md5' ... ] by oid
  schema         [ lines of pg_dump --schema-only, normalised ] (see
                 normalise_dump)

With C<include_state =E<gt> 1> the tool's schema is not left out (for "this
database did not change" fingerprints).

=cut

sub database_state
{
	my ($node, $db, %opts) = @_;
	return (database_states([ $node, $db ], %opts))[0];
}

# database_states([node, db], [node, db], ...; %opts): the states of several
# databases, the queries of all of them running at the same time.
sub database_states
{
	my @targets;
	push @targets, shift while @_ && ref $_[0] eq 'ARRAY';
	my (%opts) = @_;
	my @skip = $opts{include_state}
	  ? grep { $_ ne $STATE_SCHEMA } @SYSTEM_SCHEMAS
	  : @SYSTEM_SCHEMAS;
	my $skip_sql = join ', ', map { quote_literal($_) } @skip;

	# 1. which tables and sequences there are; the schema dump
	# Names travel JSON-encoded: an identifier may hold a newline.
	my $list_sql = <<"SQL";
SELECT 'T', to_json(format('%I.%I', n.nspname, c.relname))::text
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ($skip_sql) AND n.nspname !~ '^pg_(toast|temp)'
UNION ALL
SELECT 'S', to_json(format('%I.%I', n.nspname, c.relname))::text
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ($skip_sql)
ORDER BY 1, 2;
SQL
	my @jobs = map { _psql_start(@$_, $list_sql) } @targets;
	my @dumps = map {
		_dump_start(@$_, $opts{include_state} ? () : ("--exclude-schema=$STATE_SCHEMA"))
	} @targets;
	my @lists = map { _psql_finish($_) } @jobs;

	# 2. per-table digests, sequence values, large objects
	my (@names, @data_jobs);
	for my $i (0 .. $#targets)
	{
		my (@t, @s);
		for my $line (split /\n/, $lists[$i])
		{
			my ($kind, $json) = split /$FS/, $line, 2;
			# psql's UTF-8 bytes stay bytes: JSON::PP returns them as
			# characters below 256, which must not be encoded again
			my $name = $JSON->decode($json);
			utf8::downgrade($name);
			push @t, $name if $kind eq 'T';
			push @s, $name if $kind eq 'S';
		}
		push @names, [ \@t, \@s ];
		my $sql = '';
		for my $k (0 .. $#t)
		{
			$sql .= "SELECT 'D', $k, " . _table_digest_expr($t[$k]) . ";\n";
		}
		for my $k (0 .. $#s)
		{
			$sql .=
			  "SELECT 'Q', $k, last_value || ' ' || is_called FROM $s[$k];\n";
		}
		$sql .= <<'SQL';
SELECT 'L', l.oid, pg_get_userbyid(l.lomowner), coalesce(l.lomacl::text, '-'),
       coalesce(obj_description(l.oid, 'pg_largeobject'), '-'),
       length(lo_get(l.oid)), md5(lo_get(l.oid))
FROM pg_largeobject_metadata AS l ORDER BY l.oid;
SQL
		push @data_jobs, _psql_start(@{ $targets[$i] }, $sql);
	}

	my @states;
	for my $i (0 .. $#targets)
	{
		my ($t, $s) = @{ $names[$i] };
		my %state = (tables => {}, sequences => {}, large_objects => []);
		for my $line (split /\n/, _psql_finish($data_jobs[$i]))
		{
			my ($kind, @f) = split /$FS/, $line, -1;
			if ($kind eq 'D')
			{
				$state{tables}{ printable($t->[ $f[0] ]) } =
				  { rows => $f[1], digest => $f[2], sql => $t->[ $f[0] ] };
			}
			elsif ($kind eq 'Q')
			{
				$state{sequences}{ printable($s->[ $f[0] ]) } = $f[1];
			}
			elsif ($kind eq 'L')
			{
				push @{ $state{large_objects} }, join ' ', @f;
			}
		}
		$state{schema} = [ normalise_dump(_dump_finish($dumps[$i])) ];
		push @states, \%state;
	}
	return @states;
}

# The digest of one table: the row count and a multiset hash of the rows'
# text: the sums of two independent 64-bit hashes (seeds 0 and 1) of every
# row, summed exactly as numeric.  Like comparing the sorted lists of row
# hashes, physical order does not count and duplicates do; unlike sorting,
# it takes one pass (2 million rows: 2.5 s instead of 15 s).  A changed,
# missing or extra row changes both sums unless 128 bits of hash collide.
sub _table_digest_expr
{
	my ($table) = @_;
	return <<"SQL";
count(*),
       coalesce(sum(hashtextextended(__rt::text, 0)), 0) || '/' ||
       coalesce(sum(hashtextextended(__rt::text, 1)), 0)
FROM ONLY $table AS __rt
SQL
}

=pod

=item normalise_dump($text) => @lines

pg_dump output without what differs between two dumps of equal databases:
comment lines, SET lines, the search_path set_config, C<\restrict> /
C<\unrestrict> lines (random key) and blank lines.

=cut

sub normalise_dump
{
	my ($text) = @_;
	return grep {
		!/^--/
		  && !/^\s*$/
		  && !/^SET /
		  && !/^SELECT pg_catalog\.set_config\('search_path'/
		  && !/^\\(un)?restrict /
	} split /\n/, $text;
}

=pod

=item compare_databases($source, $target, $db [, $target_db]) => ($all_equal, $source_state, $target_state)

Assert that the target database holds what the source holds, one TAP test
per aspect so a failure says what differs: the set of tables; per table the
row count and the rows themselves (on a mismatch the first differing rows
are printed); sequences; large objects; the normalised schema dump (a
unified diff is printed on a mismatch).  Returns true when all passed, and
in list context also both database_state() results.

=cut

sub compare_databases
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($src, $tgt, $db, $tgt_db) = @_;
	$tgt_db //= $db;
	my ($s, $t) = database_states([ $src, $db ], [ $tgt, $tgt_db ]);
	my $ok = 1;

	$ok &= is_deeply([ sort keys %{ $t->{tables} } ],
		[ sort keys %{ $s->{tables} } ],
		'same tables and materialized views');
	for my $name (sort keys %{ $s->{tables} })
	{
		my $want = $s->{tables}{$name};
		my $got = $t->{tables}{$name} // { rows => '(missing)', digest => '' };
		$ok &= is($got->{rows}, $want->{rows}, "row count of $name");
		my $same = is($got->{digest}, $want->{digest}, "rows of $name");
		if (!$same && $got->{rows} ne '(missing)')
		{
			diag(row_differences($src, $db, $tgt, $tgt_db, $want->{sql}));
		}
		$ok &= $same;
	}
	$ok &= is_deeply($t->{sequences}, $s->{sequences},
		'sequences: last_value and is_called');
	$ok &= is_deeply($t->{large_objects}, $s->{large_objects},
		'large objects: oid, owner, acl, comment, size, md5');
	my $same_schema =
	  is_deeply($t->{schema}, $s->{schema}, 'schema (pg_dump --schema-only)');
	diag(lines_diff($s->{schema}, $t->{schema})) unless $same_schema;
	$ok &= $same_schema;
	return wantarray ? ($ok, $s, $t) : $ok;
}

=pod

=item state_differences($state1, $state2) => @what

The aspects in which two database_state() results differ, as short strings
("rows of public.t", "sequence public.s", "large objects", "schema",
"table list").  Empty when they are equal.  Used to prove that the
comparison catches a change.

=cut

sub state_differences
{
	my ($p, $q) = @_;
	my @d;
	my %names = map { $_ => 1 } keys %{ $p->{tables} }, keys %{ $q->{tables} };
	push @d, 'table list'
	  if join(',', sort keys %{ $p->{tables} }) ne
	  join(',', sort keys %{ $q->{tables} });
	for my $n (sort keys %names)
	{
		my $x = $p->{tables}{$n} // {};
		my $y = $q->{tables}{$n} // {};
		push @d, "rows of $n"
		  if ($x->{digest} // '') ne ($y->{digest} // '')
		  || ($x->{rows} // '') ne ($y->{rows} // '');
	}
	my %seqs =
	  map { $_ => 1 } keys %{ $p->{sequences} }, keys %{ $q->{sequences} };
	for my $n (sort keys %seqs)
	{
		push @d, "sequence $n"
		  if ($p->{sequences}{$n} // '') ne ($q->{sequences}{$n} // '');
	}
	push @d, 'large objects'
	  if join("\n", @{ $p->{large_objects} }) ne
	  join("\n", @{ $q->{large_objects} });
	push @d, 'schema'
	  if join("\n", @{ $p->{schema} }) ne join("\n", @{ $q->{schema} });
	return @d;
}

=pod

=item printable($name)

A name fit for a test description: newlines and other control characters
shown as \n, \xHH.

=cut

sub printable
{
	my ($s) = @_;
	$s =~ s/\n/\\n/g;
	$s =~ s/([\x00-\x1f\x7f])/sprintf('\\x%02X', ord $1)/ge;
	return $s;
}

=pod

=item row_differences($src, $src_db, $tgt, $tgt_db, $table, $max) => $text

The rows of C<$table> (a quoted, qualified name) present more often on one
side than on the other, at most C<$max> (10) of each, as text for diag().
Fetches every row's md5, so use it only after a digest mismatch.

=cut

sub row_differences
{
	my ($src, $src_db, $tgt, $tgt_db, $table, $max) = @_;
	$max //= 10;
	my @nodes = ([ $src, $src_db ], [ $tgt, $tgt_db ]);
	# 1. every row's hash, on both sides at once
	my @jobs = map { _psql_start(@$_, "SELECT md5(__rt::text) FROM ONLY $table AS __rt;") } @nodes;
	my @count;
	for my $job (@jobs)
	{
		my %c;
		$c{$_}++ for split /\n/, _psql_finish($job);
		push @count, \%c;
	}
	# 2. the text of the rows whose hash is more frequent on one side
	my $out = "first differing rows of $table (row text cut at 400 chars):\n";
	for my $dir ([ 0, 1, 'only on source' ], [ 1, 0, 'only on target' ])
	{
		my ($p, $q, $label) = @$dir;
		my %extra;
		for my $h (sort keys %{ $count[$p] })
		{
			my $n = $count[$p]{$h} - ($count[$q]{$h} // 0);
			$extra{$h} = $n if $n > 0;
			last if keys %extra >= $max;
		}
		next unless %extra;
		my $in = join ', ', map { "'$_'" } sort keys %extra;
		my %text = map { split /$FS/, $_, 2 } split /\n/, query(
			@{ $nodes[$p] },
			"SELECT DISTINCT md5(__rt::text), to_json(left(__rt::text, 400))::text "
			  . "FROM ONLY $table AS __rt WHERE md5(__rt::text) IN ($in);");
		$out .= "  $label (x$extra{$_}): " . ($text{$_} // '?') . "\n" for sort keys %extra;
	}
	return $out;
}

=pod

=item lines_diff(\@a, \@b) => $text

A unified diff (diff -u) of two line lists, cut at 80 lines.

=cut

sub lines_diff
{
	my ($left, $right) = @_;
	my $fa = File::Temp->new;
	my $fb = File::Temp->new;
	print $fa join("\n", @$left), "\n";
	print $fb join("\n", @$right), "\n";
	close $fa;
	close $fb;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'diff', '-u', "$fa", "$fb" ], '>', \$out, '2>', \$err);
	my @lines = split /\n/, $out;
	splice @lines, 80, @lines - 80, '... (diff cut)' if @lines > 80;
	return "schema diff (--- source, +++ target):\n" . join("\n", @lines);
}

=pod

=item fingerprint($node, $db) => \%state

database_state() of C<$db> including the tool's own schema, plus what the
tool could change elsewhere on the cluster: the databases, the roles, the
replication slots and the client sessions other than our own.  Two equal
fingerprints mean nothing changed.  Waits (polling, up to 60 s) for client
sessions to go away first, since a backend exits shortly after its client.

=cut

sub fingerprint
{
	my ($node, $db) = @_;
	wait_for_no_sessions($node, 60);
	my $state = database_state($node, $db, include_state => 1);
	# the backends of database_state's own psql and pg_dump end a moment
	# after they exit (one was seen 'idle in transaction' in 030)
	wait_for_no_sessions($node, 60);
	$state->{cluster} = [
		split /\n/, query(
			$node, 'postgres', <<'SQL')];
SELECT 'database ' || datname FROM pg_database
UNION ALL SELECT 'role ' || rolname FROM pg_roles
UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots
UNION ALL SELECT 'session ' || coalesce(application_name, '') || ' ' || coalesce(state, '')
  FROM pg_stat_activity
  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY 1;
SQL
	return $state;
}

=pod

=back

=head1 QUERIES AND WAITING

=over

=item query($node, $db, $sql) => $text

Run C<$sql> with psql (-XAt, fields separated by "\x1f", ON_ERROR_STOP) and
the comparison session settings; dies with psql's stderr on error.

=cut

sub query
{
	my ($node, $db, $sql) = @_;
	return _psql_finish(_psql_start($node, $db, $sql));
}

sub _psql_start
{
	my ($node, $db, $sql) = @_;
	my ($out, $err) = ('', '');
	my $job = { out => \$out, err => \$err, what => "$db on " . $node->name };
	my $input = "$SESSION_SETUP\n$sql";
	$job->{h} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-F', $FS, '-d', $node->connstr($db)
		],
		'<', \$input, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return $job;
}

sub _psql_finish
{
	my ($job) = @_;
	my $ok = eval { $job->{h}->finish };
	my $err = ${ $job->{err} };
	croak "psql on $job->{what} failed: " . ($@ || $err) unless $ok;
	my $out = ${ $job->{out} };
	chomp $out;
	return $out;
}

sub _dump_start
{
	my ($node, $db, @extra) = @_;
	my ($out, $err) = ('', '');
	my $job = { out => \$out, err => \$err, what => "pg_dump of $db on " . $node->name };
	$job->{h} = IPC::Run::start(
		[ 'pg_dump', '--schema-only', '--no-password', @extra, '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return $job;
}

sub _dump_finish { return _psql_finish(@_); }

=pod

=item wait_until($node, $db, $sql, $expected, $timeout_s) => $ok

Poll C<$sql> every 100 ms until its output equals C<$expected> ('t' by
default), for at most C<$timeout_s> seconds (default: the framework's
timeout).  Like poll_query_until, with a bound of our choosing.  Query
errors count as "not yet".

=cut

sub wait_until
{
	my ($node, $db, $sql, $expected, $timeout_s) = @_;
	$expected //= 't';
	$timeout_s //= $PostgreSQL::Test::Utils::timeout_default;
	my $deadline = time + $timeout_s;
	my $last = '';
	while (1)
	{
		$last = eval { query($node, $db, $sql) } // "error: $@";
		return 1 if $last eq $expected;
		last if time > $deadline;
		usleep(100_000);
	}
	diag("waited ${timeout_s}s for: $sql\nexpected: $expected\nlast: $last");
	return 0;
}

=pod

=item wait_for_no_sessions($node, $timeout_s) => $ok

Wait until the node has no client session besides the polling one (the
backends of a client that exited go away shortly after it).

=item sessions_sql / held_xmin_sql

SQL counting the other client sessions, and the backends of any kind that
hold back the xmin horizon.

=cut

our $SESSIONS_SQL = <<'SQL';
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
SQL

our $HELD_XMIN_SQL = <<'SQL';
SELECT count(*) FROM pg_stat_activity
WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND pid <> pg_backend_pid()
SQL

sub wait_for_no_sessions
{
	my ($node, $timeout_s) = @_;
	return 1 if wait_until($node, 'postgres', $SESSIONS_SQL, '0', $timeout_s);
	diag("sessions left on " . $node->name . ":\n" . query($node, 'postgres', <<'SQL'));
SELECT format('pid=%s app=%L state=%s xmin=%s age=%s query=%L', pid, application_name,
              state, backend_xmin, date_trunc('second', now() - backend_start), left(query, 100))
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
SQL
	return 0;
}

=pod

=back

=head1 RUNNING THE TOOL

=over

=item run_copy(%args) => { ok, exit, signal, stdout, stderr, cmd }

Run C<pgrelocate copy>.  Arguments:

  source, target  connection strings (passed as --source / --target when
                  defined)
  args            further arguments (array ref), e.g. [ '--jobs', 4 ]
  command         the subcommand (default 'copy'); undef runs the binary
                  with args only
  env             environment changes: name => value, or undef to unset
  timeout         seconds (default: the framework's timeout)

The PGRELOCATE_* and libpq PG* variables of @SCRUBBED_ENV (PGAPPNAME too,
which the TAP framework sets) are unset unless C<env> sets them, so the
environment of the test runner cannot leak into the tool.  Output is
recorded in the test log.

=cut

our @SCRUBBED_ENV = qw(PGRELOCATE_SOURCE PGRELOCATE_TARGET PGRELOCATE_JOBS
  PGRELOCATE_PG_BIN PGRELOCATE_PROGRESS PGHOST PGHOSTADDR PGPORT PGDATABASE
  PGUSER PGPASSWORD PGSERVICE PGOPTIONS PGAPPNAME);

sub tool { return $ENV{PGRELOCATE} // 'pgrelocate'; }

sub copy_command
{
	my (%args) = @_;
	my @cmd = (tool());
	push @cmd, $args{command} // 'copy' unless exists $args{command} && !defined $args{command};
	push @cmd, '--source', $args{source} if defined $args{source};
	push @cmd, '--target', $args{target} if defined $args{target};
	push @cmd, @{ $args{args} // [] };
	return \@cmd;
}

sub _tool_env
{
	my (%args) = @_;
	my %env = %ENV;
	delete $env{$_} for @SCRUBBED_ENV;
	while (my ($k, $v) = each %{ $args{env} // {} })
	{
		if (defined $v) { $env{$k} = $v; }
		else            { delete $env{$k}; }
	}
	return %env;
}

sub run_copy
{
	my (%args) = @_;
	return _fake_copy(%args) if $ENV{RELOCATE_TEST_FAKE_COPY};
	my $cmd = copy_command(%args);
	my ($out, $err) = ('', '');
	local %ENV = _tool_env(%args);
	note('running: ' . join(' ', map { _shell_quote($_) } @$cmd));
	my $timed_out = 0;
	eval {
		IPC::Run::run($cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($args{timeout} // $PostgreSQL::Test::Utils::timeout_default));
		1;
	} or do { $timed_out = 1; $err .= "\n[test harness: $@]"; };
	my $status = $?;
	my %r = (
		cmd    => $cmd,
		stdout => $out,
		stderr => $err,
		exit   => $timed_out ? -1 : $status >> 8,
		signal => $timed_out ? 0 : $status & 127,
	);
	$r{ok} = !$timed_out && $status == 0;
	note("exit $r{exit}, signal $r{signal}\n--- stdout:\n$out\n--- stderr:\n$err");
	return \%r;
}

# Harness development only: what a perfect copy would leave, without the
# tool (no state schema, no statistics).
sub _fake_copy
{
	my (%args) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'pg_dump', '-Fc', '-d', $args{source} ], '|',
		[ 'pg_restore', '--exit-on-error', '-d', $args{target} ],
		'>', \$out, '2>', \$err);
	note("fake copy (pg_dump | pg_restore): " . ($ok ? 'ok' : "failed: $err"));
	return { ok => $ok, exit => $ok ? 0 : 1, signal => 0, stdout => $out, stderr => $err, cmd => ['fake'] };
}

sub _shell_quote
{
	my ($s) = @_;
	return $s if $s =~ m{^[\w./:=@,+-]+$};
	$s =~ s/'/'\\''/g;
	return "'$s'";
}

=pod

=item copy_ok($name, %args) => $result

run_copy() and assert exit status 0; on failure prints stdout and stderr.

=cut

sub copy_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, %args) = @_;
	my $r = run_copy(%args);
	ok($r->{ok}, "$name: exit status 0")
	  or diag("exit $r->{exit}, signal $r->{signal}\nstdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	return $r;
}

=pod

=item copy_fails_like($name, \@regexes, %args) => $result

run_copy() and assert that it fails cleanly: a non-zero exit status (not a
signal, not a timeout), a line "pgrelocate: error: ..." on stderr, that line
and the rest of stderr after it (DETAIL, HINT) matching every regex in
C<\@regexes>, and no sanitizer report or crash text.  C<secret =E<gt> 'text'> also asserts
that the text appears neither in stdout nor in stderr.

=cut

sub copy_fails_like
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, $regexes, %args) = @_;
	my $secret = delete $args{secret};
	my $r = run_copy(%args);
	my $ok = ok(!$r->{ok} && $r->{exit} > 0 && $r->{signal} == 0,
		"$name: fails with a non-zero exit status (no signal, no timeout)");
	# The error: its first line and what follows (DETAIL, HINT), not the
	# progress lines before it (which name the source and target anyway).
	my ($error) = $r->{stderr} =~ /(^pgrelocate: error: .*)\z/ms;
	$ok &= ok(defined $error, "$name: stderr has a line \"pgrelocate: error: ...\"");
	for my $re (@$regexes)
	{
		$ok &= like($error // '', $re, "$name: error message matches $re");
	}
	$ok &= unlike($r->{stderr}, qr/AddressSanitizer|runtime error:|Segmentation|core dumped/,
		"$name: no crash or sanitizer report");
	if (defined $secret)
	{
		$ok &= ok(index($r->{stdout} . $r->{stderr}, $secret) < 0,
			"$name: the password appears neither in stdout nor in stderr");
	}
	diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}") unless $ok;
	return $r;
}

=pod

=item start_copy(%args) => $handle

Start pgrelocate in the background (IPC::Run::start) with run_copy's
arguments.  The handle has C<{h}> (the IPC::Run harness), C<{stdout}>,
C<{stderr}> (scalar refs) and C<{pid}>.

=item finish_copy($handle) => $result

Wait for it (timeout: the framework's) and return a run_copy-style result.

=cut

# A test that dies must not leave a pgrelocate running (a follower
# reconnects forever): END kills what start_copy started and is still there.
our @background_pids;

sub start_copy
{
	my (%args) = @_;
	my $cmd = copy_command(%args);
	my ($out, $err) = ('', '');
	local %ENV = _tool_env(%args);
	note('starting: ' . join(' ', map { _shell_quote($_) } @$cmd));
	my $h = IPC::Run::start($cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($args{timeout} // $PostgreSQL::Test::Utils::timeout_default));
	push @background_pids, $h->{KIDS}[0]{PID};
	return { h => $h, stdout => \$out, stderr => \$err, pid => $h->{KIDS}[0]{PID}, cmd => $cmd };
}

END
{
	for my $pid (@background_pids)
	{
		kill('KILL', $pid) if kill(0, $pid);
	}
}

sub finish_copy
{
	my ($handle) = @_;
	eval { $handle->{h}->finish; 1 } or ${ $handle->{stderr} } .= "\n[test harness: $@]";
	my $status = $handle->{h}->full_result(0) // -1;
	my %r = (
		cmd    => $handle->{cmd},
		stdout => ${ $handle->{stdout} },
		stderr => ${ $handle->{stderr} },
		exit   => $status >> 8,
		signal => $status & 127,
		ok     => $status == 0,
	);
	note("exit $r{exit}, signal $r{signal}\n--- stdout:\n$r{stdout}\n--- stderr:\n$r{stderr}");
	return \%r;
}

=pod

=back

=head1 SMALL THINGS

=over

=item quote_ident($name), quote_literal($text)

SQL quoting for identifiers and string literals.

=cut

sub quote_ident
{
	my ($s) = @_;
	$s =~ s/"/""/g;
	return qq{"$s"};
}

sub quote_literal
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

=pod

=back

=cut

1;

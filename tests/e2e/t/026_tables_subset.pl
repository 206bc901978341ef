# --tables: copy and start move a subset of the source's tables.
#
#   A. bad input changes nothing on either server: a pattern that matches
#      no table (named in the error), a malformed pattern, a chosen table
#      with a foreign key to a table left out (the constraint named), a
#      chosen table inheriting from a table left out (child and parent
#      named), a pattern naming only a partition (its root named).
#   E. inheritance: a parent and its child chosen together are copied,
#      each with its own rows; a parent chosen without its child is copied
#      without the child's rows (and C: start publishes the parent alone,
#      so changes to the child left out are not sent).
#   B. copy --tables (given twice, one of them a comma list, with a quoted
#      mixed-case name): the chosen tables (a partitioned table with its
#      partitions), their rows, owned sequences (values set) and a view over
#      them are on the target; the tables left out, the sequence one of them
#      owns and the view over one are not.  --resume with other --tables is
#      refused.
#   C. start --tables: the publication lists only the chosen tables; changes
#      to chosen tables arrive, changes to the others are not applied (and
#      do not stop the follow); cleanup leaves nothing.  status --tables
#      shows only the matching tables (partitions by their root's name) and
#      copy totals over them; a pattern matching none of them is an error.
#   D. check --tables judges only the chosen tables: a table without a key
#      and an unlogged table left out are not reported (without --tables
#      they are); a chosen one is; a pattern matching nothing is a FAIL.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => [ $db, 'app_copy', 'app_bad', 'app_inh', 'app_parent' ]);
$src->safe_psql($db, <<'SQL');
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id int PRIMARY KEY, name text);
CREATE TABLE shop.orders (id serial PRIMARY KEY, customer_id int REFERENCES shop.customers,
                          total numeric);
CREATE TABLE shop."Order Items" (order_id int REFERENCES shop.orders, line int, what text,
                                 PRIMARY KEY (order_id, line));
INSERT INTO shop.customers SELECT i, 'customer ' || i FROM generate_series(1, 50) i;
INSERT INTO shop.orders (customer_id, total) SELECT 1 + i % 50, i * 1.5 FROM generate_series(1, 500) i;
INSERT INTO shop."Order Items" SELECT o, l, 'item ' || l FROM generate_series(1, 500) o,
                                      generate_series(1, 3) l;
CREATE VIEW shop.order_totals AS SELECT customer_id, sum(total) AS total FROM shop.orders GROUP BY 1;

CREATE TABLE public.events (id int, at date, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO public.events SELECT i, date '2024-06-01' + i, 'event ' || i FROM generate_series(1, 400) i;

-- left out: a table with an owned sequence and a foreign key to a chosen
-- table (allowed: it goes with the table left out), a schema of its own
-- with a view over it
CREATE TABLE public.stuff (id serial PRIMARY KEY, order_id int REFERENCES shop.orders, note text);
INSERT INTO public.stuff (order_id, note) SELECT i, 'stuff ' || i FROM generate_series(1, 100) i;
CREATE SCHEMA audit;
CREATE TABLE audit.log (id bigserial PRIMARY KEY, msg text);
INSERT INTO audit.log (msg) SELECT 'log ' || i FROM generate_series(1, 100) i;
CREATE VIEW audit.recent AS SELECT * FROM audit.log ORDER BY id DESC LIMIT 10;
CREATE VIEW public.orders_and_logs AS SELECT o.id FROM shop.orders o JOIN audit.log l ON l.id = o.id;
-- left out: what check would judge (no key; unlogged)
CREATE TABLE public.nokey (a int, b text);
INSERT INTO public.nokey VALUES (1, 'one');
CREATE UNLOGGED TABLE audit.scratch (id int PRIMARY KEY);
-- inheritance (not partitioning): a child holds rows of its own
CREATE TABLE public.parent (id int PRIMARY KEY, note text);
CREATE TABLE public.child (extra text) INHERITS (public.parent);
ALTER TABLE public.child ADD PRIMARY KEY (id);
INSERT INTO public.parent VALUES (1, 'parent 1'), (2, 'parent 2');
INSERT INTO public.child VALUES (10, 'child 10', 'x'), (11, 'child 11', 'y'), (12, 'child 12', 'z');
-- a sequence nobody owns stays (defaults of chosen tables may use it)
CREATE SEQUENCE public.ticket_seq START 1000;
SELECT nextval('public.ticket_seq');
SQL
FollowTest::create_marker($src, $db);

my @chosen = ('shop.customers', 'shop.orders', 'shop."Order Items"', 'public.events');
my @left_out = ('public.stuff', 'audit.log', 'audit.recent', 'public.orders_and_logs',
	'public.stuff_id_seq', 'audit.log_id_seq', 'public.nokey', 'audit.scratch', 'public.child');

sub rows_of
{
	my ($node, $dbname, $table) = @_;
	return RelocateTest::query($node, $dbname,
		"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '')"
		  . " FROM $table t");
}

sub exists_on
{
	my ($node, $dbname, $name) = @_;
	return RelocateTest::query($node, $dbname,
		'SELECT to_regclass(' . RelocateTest::quote_literal($name) . ') IS NOT NULL') eq 't';
}

my %copy_conn = (source => $src->connstr($db), target => $tgt->connstr('app_copy'));
my %bad_conn = (source => $src->connstr($db), target => $tgt->connstr('app_bad'));

# --- A. bad input ---
{
	my $src_before = RelocateTest::fingerprint($src, $db);
	my $tgt_before = RelocateTest::fingerprint($tgt, 'app_bad');
	RelocateTest::copy_fails_like('A: a pattern matching nothing',
		[ qr/^pgrelocate: error: --tables pattern nomatch\* matched no table on the source/m,
		  qr/HINT:\s+.*quote mixed-case names/ ],
		%bad_conn, args => [ '--tables', 'shop.*,nomatch*' ]);
	RelocateTest::copy_fails_like('A: two patterns matching nothing',
		[ qr/^pgrelocate: error: --tables patterns "Shop"\.orders, x\? matched no table/m ],
		%bad_conn, args => [ '--tables', '"Shop".orders', '--tables', 'x?,shop.*' ]);
	RelocateTest::copy_fails_like('A: a pattern with two dots',
		[ qr/^pgrelocate: error: --tables pattern "app\.shop\.orders" has more than one dot/m ],
		%bad_conn, args => [ '--tables', 'app.shop.orders' ]);
	RelocateTest::copy_fails_like('A: an unterminated quote',
		[ qr/^pgrelocate: error: --tables pattern ""Order Items" has an unterminated double quote/m ],
		%bad_conn, args => [ '--tables', '"Order Items' ]);
	RelocateTest::copy_fails_like('A: a foreign key to a table left out',
		[ qr/^pgrelocate: error: 2 foreign keys from chosen tables to tables --tables leaves out/m,
		  qr/DETAIL:\s+.*"Order Items_order_id_fkey" on shop\."Order Items" references shop\.orders/,
		  qr/DETAIL:\s+.*stuff_order_id_fkey on public\.stuff references shop\.orders/,
		  qr/HINT:\s+Add the referenced tables to --tables/ ],
		%bad_conn, args => [ '--tables', 'shop."Order Items",public.stuff' ]);
	RelocateTest::copy_fails_like('A: start with a foreign key to a table left out',
		[ qr/^pgrelocate: error: 1 foreign key from chosen tables/m,
		  qr/DETAIL:\s+orders_customer_id_fkey on shop\.orders references shop\.customers/ ],
		%bad_conn, command => 'start', args => [ '--tables', 'shop.orders' ]);
	RelocateTest::copy_fails_like('A: a chosen table inheriting from a table left out',
		[ qr/^pgrelocate: error: 1 chosen table inherits from tables --tables leaves out/m,
		  qr/DETAIL:\s+public\.child inherits from public\.parent$/m,
		  qr/HINT:\s+Add the parent tables to --tables, or leave the child tables out/ ],
		%bad_conn, args => [ '--tables', 'shop.*,public.child' ]);
	RelocateTest::copy_fails_like('A: start with a chosen table inheriting from a table left out',
		[ qr/^pgrelocate: error: 1 chosen table inherits from tables --tables leaves out/m,
		  qr/DETAIL:\s+public\.child inherits from public\.parent$/m ],
		%bad_conn, command => 'start', args => [ '--tables', 'public.child' ]);
	RelocateTest::copy_fails_like('A: a pattern naming only a partition',
		[ qr/^pgrelocate: error: --tables pattern public\.events_2024 matched only partitions on the source/m,
		  qr/DETAIL:\s+public\.events_2024 is a partition of public\.events$/m,
		  qr/HINT:\s+Choose the partitioned table instead: its partitions come with it/ ],
		%bad_conn, args => [ '--tables', 'public.events_2024' ]);
	is_deeply(RelocateTest::fingerprint($src, $db), $src_before, 'A: the source did not change');
	is_deeply(RelocateTest::fingerprint($tgt, 'app_bad'), $tgt_before, 'A: the target did not change');
	is_deeply([ FollowTest::leftovers($src, $tgt, 'app_bad') ], [], 'A: no slot, publication or state');
}

# --- D. check --tables ---
{
	my $src_before = RelocateTest::fingerprint($src, $db);
	my $check = sub {
		my (@args) = @_;
		my $r = RelocateTest::run_copy(%bad_conn, command => 'check', args => [ '--json', @args ]);
		my $doc = eval { JSON::PP->new->decode($r->{stdout}) } // {};
		my %c = map { $_->{name} => "$_->{status} $_->{message}" } @{ $doc->{checks} // [] };
		return ($r, \%c);
	};
	my ($r, $c) = $check->();
	like($c->{'tables.replica_identity'}, qr/^WARN 1 table without primary key or replica identity: public\.nokey:/,
		'D: without --tables, check reports the table without a key');
	like($c->{'tables.unlogged'}, qr/^WARN 1 unlogged table: audit\.scratch:/,
		'D: without --tables, check reports the unlogged table');
	ok(!exists $c->{'tables.selection'}, 'D: without --tables, no selection line');

	($r, $c) = $check->('--tables', 'shop.*,public.events');
	is($r->{exit}, 0, 'D: check --tables: exit status 0') or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	like($c->{'tables.selection'}, qr/^PASS --tables "shop\.\*,public\.events": 4 tables chosen/,
		'D: check --tables: the selection line counts the chosen tables');
	is($c->{'tables.replica_identity'}, 'PASS every table has a primary key or a replica identity',
		'D: check --tables: the table without a key left out is not reported');
	is($c->{'tables.unlogged'}, 'PASS no unlogged tables', 'D: check --tables: the unlogged table left out is not reported');
	like($c->{'data.size'}, qr/^PASS 5 tables, /, 'D: check --tables: the size counts the chosen tables (partitions, not the root)');

	($r, $c) = $check->('--tables', 'public.nokey,audit.*');
	like($c->{'tables.replica_identity'}, qr/^WARN 1 table without primary key or replica identity: public\.nokey:/,
		'D: check --tables naming the table without a key reports it');
	like($c->{'tables.unlogged'}, qr/^WARN 1 unlogged table: audit\.scratch:/,
		'D: check --tables naming the unlogged table reports it');

	($r, $c) = $check->('--tables', 'shop.*,nomatch*');
	is($r->{exit}, 1, 'D: check --tables matching nothing: exit status 1');
	is($c->{'tables.selection'},
		'FAIL --tables "shop.*,nomatch*" is refused: --tables pattern nomatch* matched no table on the source (in "shop.*,nomatch*")',
		'D: check --tables matching nothing: a FAIL line naming the pattern');
	ok(!exists $c->{'tables.replica_identity'} && !exists $c->{'data.size'},
		'D: check --tables matching nothing: the table checks are not run');
	is_deeply(RelocateTest::fingerprint($src, $db), $src_before, 'D: check changed nothing on the source');
	is_deeply([ FollowTest::leftovers($src, $tgt, 'app_bad') ], [], 'D: check left no state');
}

# --- E. inheritance ---
{
	my $own = q{SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM ONLY public.parent};
	my $kids = q{SELECT string_agg(id || ' ' || note || ' ' || extra, ', ' ORDER BY id) FROM public.child};
	RelocateTest::copy_ok('E: copy --tables parent and child', source => $src->connstr($db),
		target => $tgt->connstr('app_inh'), args => [ '--tables', 'public.parent,public.child' ]);
	is(RelocateTest::query($tgt, 'app_inh', $own), '1 parent 1, 2 parent 2', 'E: the parent has its own rows only');
	is(RelocateTest::query($tgt, 'app_inh', $kids), '10 child 10 x, 11 child 11 y, 12 child 12 z',
		'E: the child has its rows');
	is(RelocateTest::query($tgt, 'app_inh',
			q{SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
			  WHERE i.inhrelid = 'public.child'::regclass}),
		'parent', 'E: the child inherits from the parent on the target');
	is(RelocateTest::query($tgt, 'app_inh', 'SELECT count(*) FROM public.parent'), '5',
		'E: the parent with its child: 5 rows, as on the source');

	RelocateTest::copy_ok('E: copy --tables parent without its child', source => $src->connstr($db),
		target => $tgt->connstr('app_parent'), args => [ '--tables', 'public.parent' ]);
	is(RelocateTest::query($tgt, 'app_parent', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM public.parent'),
		'1,2', 'E: the parent alone: its own rows, none of the child\'s');
	ok(!exists_on($tgt, 'app_parent', 'public.child'), 'E: the child left out is not on the target');
}

# --- B. copy a subset ---
my $copied = RelocateTest::copy_ok('B: copy --tables', %copy_conn,
	args => [ '--tables', 'SHOP.*', '--tables', 'public.ev*, "shop"."Order Items"', '--jobs', '2' ]);
# 3 shop primary keys and 2 partition primary keys: each built as soon as
# its table's rows were in (the partitioned parent's waits for post-data)
like($copied->{stderr}, qr/built 5 indexes and key constraints while rows were copied/,
	'B: indexes of copied tables were built during the data phase');
for my $t (@chosen, 'public.events_2024', 'public.events_2025', 'shop.order_totals')
{
	ok(exists_on($tgt, 'app_copy', $t), "B: $t is on the target");
	is(rows_of($tgt, 'app_copy', $t), rows_of($src, $db, $t), "B: rows of $t");
}
ok(!exists_on($tgt, 'app_copy', $_), "B: $_ is not on the target") for @left_out;
is(RelocateTest::query($tgt, 'app_copy', 'SELECT last_value FROM shop.orders_id_seq'), '500',
	'B: the sequence a chosen table owns has the source value');
is(RelocateTest::query($tgt, 'app_copy', 'SELECT last_value FROM public.ticket_seq'), '1000',
	'B: a sequence nobody owns is copied with its value');
is(RelocateTest::query($tgt, 'app_copy',
		"SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'shop'::regnamespace"),
	'2', 'B: foreign keys among chosen tables are there');
is(RelocateTest::query($tgt, 'app_copy', 'SELECT tables_filter FROM pgrelocate.migration'),
	'SHOP.*,public.ev*, "shop"."Order Items"', 'B: the state records the --tables of the run');
RelocateTest::copy_fails_like('B: --resume with other --tables',
	[ qr/^pgrelocate: error: the target holds a migration of --tables "SHOP\.\*,public\.ev\*, "shop"\."Order Items"", not --tables "shop\.\*"/m,
	  qr/HINT:\s+Run again with the same --tables/ ],
	%copy_conn, args => [ '--resume', '--tables', 'shop.*' ]);
RelocateTest::copy_ok('B: --resume without --tables goes on with the recorded ones', %copy_conn,
	args => ['--resume']);
{
	# check without --tables against that target judges the recorded selection
	my $r = RelocateTest::run_copy(%copy_conn, command => 'check', args => ['--json']);
	my $doc = eval { JSON::PP->new->decode($r->{stdout}) } // {};
	my %c = map { $_->{name} => "$_->{status} $_->{message}" } @{ $doc->{checks} // [] };
	like($c{'tables.selection'} // '',
		qr/^PASS the migration on the target was begun with --tables "SHOP\.\*,public\.ev\*, "shop"\."Order Items"": 4 tables chosen/,
		'B: check without --tables judges the selection recorded on the target')
	  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	is($c{'tables.replica_identity'} // '', 'PASS every table has a primary key or a replica identity',
		'B: ... so the table without a key it leaves out is not reported');
}

# --- C. start a subset, then follow ---
my $run = FollowTest::start_bg($src, $tgt, $db,
	args => [ '--tables', 'shop.*,public.events,follow_marker,public.parent', '--jobs', '2' ]);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'C: start reached the follow phase');
my $m = FollowTest::migration($tgt, $db);
is(RelocateTest::query($src, $db,
		"SELECT string_agg(n, ',' ORDER BY n COLLATE \"C\") FROM (SELECT schemaname || '.' || tablename"
		  . ' AS n FROM pg_publication_tables WHERE pubname = '
		  . RelocateTest::quote_literal($m->{replication_name}) . ') p'),
	'public.events,public.follow_marker,public.parent,shop.Order Items,shop.customers,shop.orders',
	'C: the publication lists the chosen tables only (the parent without its child)');
$src->safe_psql($db, <<'SQL');
INSERT INTO shop.orders (customer_id, total) VALUES (7, 99.5);
UPDATE shop.customers SET name = 'renamed' WHERE id = 3;
DELETE FROM shop."Order Items" WHERE order_id = 10;
INSERT INTO public.events VALUES (1000, '2025-03-01', 'new event');
INSERT INTO public.stuff (order_id, note) VALUES (1, 'not followed');
INSERT INTO audit.log (msg) VALUES ('not followed');
UPDATE audit.log SET msg = 'changed' WHERE id < 10;
TRUNCATE public.stuff;
INSERT INTO public.parent VALUES (3, 'parent 3');
INSERT INTO public.child VALUES (13, 'child 13', 'not followed');
UPDATE public.child SET note = 'changed' WHERE id = 10;
SQL
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'C: start caught up');
ok(FollowTest::running($run), 'C: start still runs after changes to tables left out');
for my $t (@chosen, 'public.events_2024', 'public.events_2025', 'ONLY public.parent')
{
	is(rows_of($tgt, $db, $t), rows_of($src, $db, $t), "C: rows of $t after the follow");
}
ok(!exists_on($tgt, $db, $_), "C: $_ is not on the target") for @left_out;

# status --tables: only the matching tables, totals over them.
my $status = sub {
	my (@args) = @_;
	return RelocateTest::run_copy(command => 'status', target => $tgt->connstr($db), args => [@args]);
};
my $st = $status->('--tables', 'shop.*');
is($st->{exit}, 0, 'C: status --tables: exit status 0') or diag($st->{stderr});
my @shown = $st->{stdout} =~ /^(.+?)\s+replicating\s/mg;
is(join(', ', sort @shown), 'shop."Order Items", shop.customers, shop.orders',
	'C: status --tables shop.*: only the shop tables');
like($st->{stdout}, qr/^selection    --tables "shop\.\*": 3 of the migration's 7 tables shown$/m,
	'C: status --tables says how many of the migration\'s tables it shows');
like($st->{stdout}, qr/^copy         3\/3 tables, 3\/3 chunks; 2,050 rows,/m,
	'C: status --tables: the copy totals cover the shown tables (50 + 500 + 1500 rows)');
$st = $status->('--json', '--tables', 'public.events');
my $doc = eval { JSON::PP->new->decode($st->{stdout}) } // {};
is(join(', ', map { $_->{name} } @{ $doc->{tables} // [] }), 'public.events_2024, public.events_2025',
	'C: status --json --tables public.events: its partitions') or diag($st->{stdout});
is("$doc->{copy}{tables} $doc->{copy}{rows_done} $doc->{tables_in_migration} $doc->{tables_filter}",
	'2 400 7 public.events', 'C: status --json --tables: totals over them, the migration\'s count, the filter');
$st = $status->();
is(scalar(() = $st->{stdout} =~ /^.+?\s+replicating\s/mg), 7, 'C: status without --tables: all 7 tables');
RelocateTest::copy_fails_like('C: status --tables matching none of the migration\'s tables',
	[ qr/^pgrelocate: error: --tables pattern public\.stuff matched no table of this migration/m ],
	command => 'status', target => $tgt->connstr($db), args => [ '--tables', 'shop.*,public.stuff' ]);

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'C: SIGINT: exit status 0') or diag("stderr:\n$r->{stderr}");
unlike($r->{stderr}, qr/error/i, 'C: no error while following');
FollowTest::cleanup_ok('C: cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'C: no slot, publication, origin or state left');

done_testing();

# pgrelocate check: every check sees its failing condition on real servers
# and reports the expected PASS / WARN / FAIL line with its fix; --json
# carries the same statuses; exit 1 exactly when a line is FAIL; and no run
# changes anything on either server (RelocateTest::fingerprint before and
# after every run).
#
# Not covered here, and why: an older target major version and an extension
# missing from the target's installation (one PostgreSQL installation serves
# both clusters; the extension rule is exercised through a version mismatch
# and an extension only a superuser may create instead); a transaction open
# for more than 5 minutes (the threshold; prepared transactions, which block
# slot creation the same way, are covered); a resumable (unfinished) state
# on the target (a finished one is covered).
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

# Parse the text report: name => { status, message, fix }, in order.
sub parse_report
{
	my ($text) = @_;
	my (%checks, @order, $last);
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^(PASS|WARN|FAIL)\s+(\S+)\s+(.*)$/)
		{
			$last = $2;
			$checks{$last} = { status => $1, message => $3 };
			push @order, $last;
		}
		elsif ($line =~ /^\s+fix: (.*)$/ && defined $last)
		{
			$checks{$last}{fix} = $1;
		}
	}
	return (\%checks, \@order);
}

# Run check (text, then --json) between two fingerprints of both databases.
# Returns the parsed text report and the run result.
sub run_check
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my (%a) = @_;
	my @fp = ([ $a{src}, $a{src_db} ], [ $a{tgt}, $a{tgt_db} ]);
	my @before = map { RelocateTest::fingerprint(@$_) } grep { $_->[0] } @fp;
	my %common = (command => 'check', source => $a{source}, target => $a{target});
	my $r = RelocateTest::run_copy(%common, args => $a{args} // []);
	my $j = RelocateTest::run_copy(%common, args => [ @{ $a{args} // [] }, '--json' ]);
	my ($checks, $order) = parse_report($r->{stdout});
	$r->{checks} = $checks;

	is($r->{exit}, $a{exit}, "$a{name}: exit status $a{exit}")
	  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	is($j->{exit}, $a{exit}, "$a{name}: --json exit status $a{exit}");
	unlike($r->{stderr} . $j->{stderr}, qr/AddressSanitizer|runtime error:|Segmentation/,
		"$a{name}: no crash");
	my $doc = eval { JSON::PP->new->decode($j->{stdout}) };
	ok($doc, "$a{name}: --json output parses") or diag("json:\n$j->{stdout}\n$@");
	if ($doc)
	{
		my %js = map { $_->{name} => $_->{status} } @{ $doc->{checks} };
		my %ts = map { $_ => $checks->{$_}{status} } @$order;
		# The rate sample may differ between two runs; its status may not.
		is_deeply(\%js, \%ts, "$a{name}: --json has the same checks and statuses");
		my $fails = grep { $_ eq 'FAIL' } values %ts;
		is($doc->{summary}{fail}, $fails, "$a{name}: summary counts the FAIL lines");
		is($doc->{summary}{ok} ? 1 : 0, $fails ? 0 : 1, "$a{name}: summary ok");
	}
	my @after = map { RelocateTest::fingerprint(@$_) } grep { $_->[0] } @fp;
	is_deeply(\@after, \@before, "$a{name}: nothing changed on either server");
	return $r;
}

# Assert one line: status, message and fix patterns.
sub expect_line
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($r, $case, $name, $status, $msg_re, $fix_re) = @_;
	my $c = $r->{checks}{$name};
	ok($c, "$case: $name is reported") or return;
	is($c->{status}, $status, "$case: $name is $status")
	  or diag("$name: $c->{message}");
	like($c->{message}, $msg_re, "$case: $name says why") if $msg_re;
	like($c->{fix} // '', $fix_re, "$case: $name gives the fix") if $fix_re;
	return;
}

# ---- a healthy pair, and the target-side conditions -------------------------

my ($src, $tgt) = RelocateTest::new_pair(
	name   => 'check_ok',
	dbname => [ 'app', 'ext', 'busy', 'done' ]);
$src->safe_psql('postgres', <<'SQL');
CREATE DATABASE u8 TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
SQL
$tgt->safe_psql('postgres', <<'SQL');
CREATE DATABASE u8 TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
CREATE DATABASE coll TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8';
CREATE ROLE plain LOGIN;
SQL
for my $db (qw(app u8))
{
	$src->safe_psql($db, <<'SQL');
CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO public.items SELECT i, md5(i::text) FROM generate_series(1, 50000) AS i;
CREATE SEQUENCE public.invoice_no;
SQL
}
$src->safe_psql('ext', <<'SQL');
CREATE EXTENSION citext VERSION '1.4';
CREATE EXTENSION pageinspect;
CREATE TABLE public.people (id int PRIMARY KEY, email citext);
INSERT INTO public.people VALUES (1, 'A@example.com');
SQL
$tgt->safe_psql('busy', 'CREATE TABLE public.existing (id int PRIMARY KEY)');

my $source = $src->connstr('app');
my $target = $tgt->connstr('app');

my $r = run_check(
	name   => 'healthy pair',
	src    => $src, src_db => 'app', tgt => $tgt, tgt_db => 'app',
	source => $source, target => $target, exit => 0);
for my $name (sort keys %{ $r->{checks} })
{
	next if $name eq 'source.max_slot_wal_keep_size';
	is($r->{checks}{$name}{status}, 'PASS', "healthy pair: $name is PASS")
	  or diag($r->{checks}{$name}{message});
}
expect_line($r, 'healthy pair', 'source.max_slot_wal_keep_size', 'WARN',
	qr/= -1 \(unlimited\): a stuck or forgotten slot keeps WAL/,
	qr/^ALTER SYSTEM SET max_slot_wal_keep_size = '\d+GB'; SELECT pg_reload_conf\(\);$/);
expect_line($r, 'healthy pair', 'data.size', 'PASS', qr/^1 tables, .* 1 sequences, 0 large objects/);
expect_line($r, 'healthy pair', 'data.copy_estimate', 'PASS',
	qr/^estimate: about \S+ to copy .* measured by reading .* of COPY text output of public\.items \(the largest table\) in/);
ok(scalar(keys %{ $r->{checks} }) >= 25, 'healthy pair: every check is reported');

$r = run_check(
	name   => 'no pg_dump in --pg-bin',
	src    => $src, src_db => 'app', tgt => $tgt, tgt_db => 'app',
	source => $source, target => $target, exit => 1,
	args   => [ '--pg-bin', PostgreSQL::Test::Utils::tempdir() ]);
expect_line($r, 'no pg_dump', 'tools.pg_dump', 'FAIL',
	qr/no pg_dump and pg_restore of version 15 or newer found in/,
	qr/postgresql-client-15\) and name their directory with --pg-bin/);

my $old_bin = PostgreSQL::Test::Utils::tempdir();
for my $prog (qw(pg_dump pg_restore))
{
	PostgreSQL::Test::Utils::append_to_file("$old_bin/$prog",
		"#!/bin/sh\necho '$prog (PostgreSQL) 11.22'\nexit 0\n");
	chmod 0755, "$old_bin/$prog";
}
$r = run_check(
	name   => 'pg_dump 11',
	src    => $src, src_db => 'app', tgt => $tgt, tgt_db => 'app',
	source => $source, target => $target, exit => 1,
	args   => [ '--pg-bin', $old_bin ]);
expect_line($r, 'pg_dump 11', 'tools.pg_dump', 'FAIL', qr/version 15 or newer/,
	qr/--pg-bin/);
my @said = "$r->{stdout}$r->{stderr}" =~ /(pg_dump 11 is older than the source server \(15\))/g;
is(scalar @said, 1, 'pg_dump 11: the FAIL line names the version found, once (no error besides)');

my $closed = RelocateTest::closed_port();
$r = run_check(
	name   => 'unreachable target',
	src    => $src, src_db => 'app',
	source => $source, exit => 1,
	target => "host=127.0.0.1 port=$closed dbname=app connect_timeout=5");
expect_line($r, 'unreachable target', 'target.connection', 'FAIL',
	qr/could not connect to .*port=$closed/, qr/accepts connections at that host and port/);
expect_line($r, 'unreachable target', 'source.wal_level', 'PASS');
ok(!exists $r->{checks}{'target.empty'}, 'unreachable target: no target checks after it');

$r = run_check(
	name   => 'target not empty',
	src    => $src, src_db => 'app', tgt => $tgt, tgt_db => 'busy',
	source => $source, target => $tgt->connstr('busy'), exit => 1);
expect_line($r, 'target not empty', 'target.empty', 'FAIL',
	qr/not empty: It holds 1 object, e\.g\. relation public\.existing/,
	qr/CREATE DATABASE on the target server/);

RelocateTest::copy_ok('copy into done', source => $source, target => $tgt->connstr('done'));
$r = run_check(
	name   => 'target holds a finished copy',
	src    => $src, src_db => 'app', tgt => $tgt, tgt_db => 'done',
	source => $source, target => $tgt->connstr('done'), exit => 1);
expect_line($r, 'finished copy', 'target.empty', 'FAIL',
	qr/holds a finished pgrelocate copy \(phase done\)/, qr/another, empty target database/);

$r = run_check(
	name   => 'LATIN1 target',
	src    => $src, src_db => 'u8', tgt => $tgt, tgt_db => 'latin',
	source => $src->connstr('u8'), target => $tgt->connstr('latin'), exit => 1);
expect_line($r, 'LATIN1 target', 'target.encoding', 'FAIL',
	qr/the source uses UTF8, the target LATIN1: characters the source holds may not exist/,
	qr/CREATE DATABASE latin TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER libc LC_COLLATE 'C' LC_CTYPE 'C'/);
expect_line($r, 'LATIN1 target', 'target.collation', 'PASS');

$r = run_check(
	name   => 'other collation',
	src    => $src, src_db => 'u8', tgt => $tgt, tgt_db => 'coll',
	source => $src->connstr('u8'), target => $tgt->connstr('coll'), exit => 0);
expect_line($r, 'other collation', 'target.collation', 'WARN',
	qr/source sorts text with libc, LC_COLLATE C, LC_CTYPE C.*target with libc, LC_COLLATE C\.utf8.*may order or compare text differently/,
	qr/LC_COLLATE 'C' LC_CTYPE 'C'/);
expect_line($r, 'other collation', 'target.encoding', 'PASS');

$r = run_check(
	name   => 'extensions, superuser target',
	src    => $src, src_db => 'ext', tgt => $tgt, tgt_db => 'ext',
	source => $src->connstr('ext'), target => $tgt->connstr('ext'), exit => 0);
expect_line($r, 'extension versions', 'target.extensions', 'WARN',
	qr/citext: the target would create version 1\.6, the source has 1\.4 \(used by public\.people\)/,
	qr/on the target before the copy: CREATE EXTENSION citext VERSION '1\.4';/);

$r = run_check(
	name   => 'target role plain',
	src    => $src, src_db => 'ext', tgt => $tgt, tgt_db => 'ext',
	source => $src->connstr('ext'), target => $tgt->connstr('ext') . ' user=plain', exit => 1);
expect_line($r, 'target role plain', 'target.superuser', 'WARN',
	qr/role plain is not a superuser: start needs one .* copy works without/,
	qr/ALTER ROLE plain SUPERUSER;/);
expect_line($r, 'target role plain', 'target.create_privilege', 'FAIL',
	qr/role plain lacks the CREATE privilege on database ext/,
	qr/^GRANT CREATE ON DATABASE ext TO plain;$/);
expect_line($r, 'target role plain', 'target.extensions', 'FAIL',
	qr/pageinspect is not installed on the target and only a superuser may create it/,
	qr/CREATE EXTENSION pageinspect; on the target as a superuser/);

# ---- a source with every problem --------------------------------------------

my ($bad, $btgt) = RelocateTest::new_pair(
	name        => 'check_bad',
	source_conf => join("\n",
		'wal_level = replica', 'max_replication_slots = 0', 'max_wal_senders = 0',
		'max_prepared_transactions = 2', 'max_slot_wal_keep_size = 1MB'));
$bad->safe_psql('app', <<'SQL');
CREATE ROLE weak LOGIN;
CREATE TABLE public.big (id int PRIMARY KEY, pad text);
INSERT INTO public.big SELECT i, repeat(md5(i::text), 2) FROM generate_series(1, 40000) AS i;
CREATE TABLE public.no_key (a int, b text);
CREATE UNLOGGED TABLE public.scratch (id int PRIMARY KEY);
CREATE MATERIALIZED VIEW public.big_count AS SELECT count(*) FROM public.big;
CREATE FOREIGN DATA WRAPPER dummy_fdw;
CREATE SERVER elsewhere FOREIGN DATA WRAPPER dummy_fdw;
CREATE FOREIGN TABLE public.remote (id int) SERVER elsewhere;
-- a shell operator, left by the NEGATOR of an operator dropped since
CREATE OPERATOR public.=== (LEFTARG = boolean, RIGHTARG = boolean, FUNCTION = booleq, NEGATOR = !==);
DROP OPERATOR public.=== (boolean, boolean);
SELECT lo_from_bytea(200001, '\x01');
CREATE TABLE public.policies (id int PRIMARY KEY, owner_name text);
ALTER TABLE public.policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON public.policies USING (owner_name = current_user);
CREATE TABLE public.secret (id int PRIMARY KEY);
GRANT SELECT ON public.big, public.no_key, public.scratch, public.big_count, public.remote,
  public.policies TO weak;
GRANT SELECT ON LARGE OBJECT 200001 TO weak;
BEGIN;
INSERT INTO public.no_key VALUES (1, 'prepared');
PREPARE TRANSACTION 'stuck_import';
SQL

$r = run_check(
	name   => 'bad source',
	src    => $bad, src_db => 'app', tgt => $btgt, tgt_db => 'app',
	source => $bad->connstr('app') . ' user=weak', target => $btgt->connstr('app'), exit => 1);
my $c = 'bad source';
expect_line($r, $c, 'source.wal_level', 'FAIL',
	qr/^wal_level = replica: start needs logical decoding \(copy still works\)$/,
	qr/^ALTER SYSTEM SET wal_level = logical; then restart the source server/);
expect_line($r, $c, 'source.replication_slots', 'FAIL',
	qr/no replication slots free \(max_replication_slots = 0, 0 in use\)/,
	qr/^ALTER SYSTEM SET max_replication_slots = 10; then restart/);
expect_line($r, $c, 'source.wal_senders', 'FAIL',
	qr/no WAL senders free \(max_wal_senders = 0, 0 in use\)/,
	qr/^ALTER SYSTEM SET max_wal_senders = 10; then restart/);
expect_line($r, $c, 'source.replication_role', 'FAIL',
	qr/role weak has neither REPLICATION nor rds_replication/,
	qr/^ALTER ROLE weak WITH REPLICATION; \(RDS and Aurora: GRANT rds_replication TO weak;\)$/);
expect_line($r, $c, 'source.max_slot_wal_keep_size', 'WARN',
	qr/max_slot_wal_keep_size = 1\.00 MB is smaller than the data \(\S+ \S+\)/,
	qr/ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'/);
expect_line($r, $c, 'source.select_privilege', 'FAIL',
	qr/^1 table: public\.secret: the source role cannot read them/,
	qr/GRANT SELECT ON public\.secret TO weak;/);
expect_line($r, $c, 'source.row_level_security', 'FAIL',
	qr/^1 table: public\.policies: row-level security applies/,
	qr/ALTER ROLE weak BYPASSRLS;/);
expect_line($r, $c, 'source.prepared_transactions', 'FAIL',
	qr/^1 prepared transaction: 'stuck_import' \(database app, owner \S+, prepared \S+ ago\): creating the replication slot waits/,
	qr/ROLLBACK PREPARED 'stuck_import'; \(or COMMIT PREPARED\) in database app;/);
expect_line($r, $c, 'source.long_transactions', 'PASS');
expect_line($r, $c, 'tables.replica_identity', 'WARN',
	qr/^1 table without primary key or replica identity: public\.no_key: once published/,
	qr/ADD PRIMARY KEY .* pgrelocate start --replica-identity-full/);
expect_line($r, $c, 'tables.unlogged', 'WARN', qr/^1 unlogged table: public\.scratch: copied once/,
	qr/ALTER TABLE public\.scratch SET LOGGED;/);
expect_line($r, $c, 'tables.large_objects', 'WARN',
	qr/^1 large object: oid 200001: copied once; logical decoding does not carry their later changes, so cutover and rollback compare/,
	qr/bytea/);
expect_line($r, $c, 'tables.materialized_views', 'WARN',
	qr/^1 materialized view: public\.big_count: refreshed on the target/,
	qr/REFRESH MATERIALIZED VIEW public\.big_count;/);
expect_line($r, $c, 'tables.foreign_tables', 'WARN',
	qr/^1 foreign table: public\.remote: their definitions are copied but not their rows/,
	qr/CREATE USER MAPPING/);
expect_line($r, $c, 'schema.not_dumped', 'WARN',
	qr/^1 uncopied object: operator public\.!==\(boolean,boolean\): pg_dump, and so copy and start, leaves out/,
	qr/ALTER OPERATOR FAMILY/);
expect_line($r, $c, 'data.copy_estimate', 'PASS', qr/COPY text output of public\.big/);

done_testing();

# pgrelocate copy with bad input: each case fails with a non-zero exit
# status and a message naming the cause, never prints a password, and
# changes nothing on either server (schema, data, sequences, large objects,
# state schema, databases, roles, slots, sessions: see
# RelocateTest::fingerprint).  The last case runs a correct copy, proving the
# failures came from the bad input and that the fingerprint does see changes.
use strict;
use warnings;

use File::Temp ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair(dbname => [ 'app', 'busy' ]);

$src->safe_psql('app', <<'SQL');
CREATE TABLE public.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
INSERT INTO public.customers (name) SELECT 'c' || i FROM generate_series(1, 1000) AS i;
CREATE TABLE public.secret_stuff (id int PRIMARY KEY, payload text);
INSERT INTO public.secret_stuff VALUES (1, 'hidden');
CREATE SEQUENCE public.invoice_no;
SELECT setval('public.invoice_no', 4242);
SELECT lo_from_bytea(100001, '\x0102');
-- A role that may read everything but one table.
CREATE ROLE limited LOGIN;
GRANT SELECT ON public.customers TO limited;
GRANT SELECT ON SEQUENCE public.invoice_no TO limited;
GRANT SELECT ON LARGE OBJECT 100001 TO limited;
SQL
# Roles are cluster-wide: the target has them too, as a user would set up.
# On the target, "plain" may connect but not create anything.
$tgt->safe_psql('postgres', 'CREATE ROLE limited LOGIN; CREATE ROLE plain LOGIN');
$tgt->safe_psql('busy', <<'SQL');
CREATE TABLE public.existing (id int PRIMARY KEY, note text);
INSERT INTO public.existing VALUES (1, 'already here');
SQL

# Password authentication (scram-sha-256) for role alice on both sides.
my $good_password = 'correct horse battery';
my $bad_password  = 'Tr0ub4dor-and-3-WRONG';
RelocateTest::enable_password_auth($_, 'alice', $good_password) for $src, $tgt;
$src->safe_psql('app', <<'SQL');
GRANT SELECT ON ALL TABLES IN SCHEMA public TO alice;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO alice;
GRANT SELECT ON LARGE OBJECT 100001 TO alice;
SQL

my $source     = $src->connstr('app');
my $target     = $tgt->connstr('app');
my $closed     = RelocateTest::closed_port();
my $nowhere    = "host=127.0.0.1 port=$closed dbname=app connect_timeout=5";
my $tmp        = PostgreSQL::Test::Utils::tempdir();
my $empty_bin  = "$tmp/empty-bin";
my $old_bin    = "$tmp/old-bin";
my $half_bin   = "$tmp/half-bin";
mkdir $_ for $empty_bin, $old_bin, $half_bin;
# pg_dump and pg_restore of PostgreSQL 11, older than the 15 source.
for my $prog (qw(pg_dump pg_restore))
{
	PostgreSQL::Test::Utils::append_to_file("$old_bin/$prog",
		"#!/bin/sh\necho '$prog (PostgreSQL) 11.22'\nexit 0\n");
	chmod 0755, "$old_bin/$prog";
}
# pg_dump but no pg_restore.
symlink '/usr/lib/postgresql/15/bin/pg_dump', "$half_bin/pg_dump";

my $uri_host = $tgt->host;
my $bad_uri =
  "postgresql://alice:$bad_password\@/app?host=$uri_host&port=" . $tgt->port;

my @cases = (
	{
		name    => 'unknown option',
		args    => [ '--bogus-flag' ],
		expect  => [ qr/--bogus-flag/, qr/unknown option|unrecognized option|invalid option/i ],
	},
	{
		name   => 'missing --target',
		target => undef,
		expect => [ qr/--target/, qr/missing|required/i ],
	},
	{
		name   => 'missing --source',
		source => undef,
		expect => [ qr/--source/, qr/missing|required/i ],
	},
	{
		name   => 'invalid --split-larger-than',
		args   => [ '--split-larger-than', '12XB' ],
		expect => [ qr/--split-larger-than/, qr/12XB/ ],
	},
	{
		name   => 'invalid --jobs',
		args   => [ '--jobs', '0' ],
		expect => [ qr/--jobs/ ],
	},
	{
		name   => 'unreachable source (closed port)',
		source => $nowhere,
		expect => [ qr/source/i, qr/\b$closed\b/, qr/refused|could not connect/i ],
	},
	{
		name   => 'unreachable target (closed port)',
		target => $nowhere,
		expect => [ qr/target/i, qr/\b$closed\b/, qr/refused|could not connect/i ],
	},
	{
		name   => 'unreachable source given in PGRELOCATE_SOURCE',
		source => undef,
		target => undef,
		env    => { PGRELOCATE_SOURCE => $nowhere, PGRELOCATE_TARGET => $target },
		expect => [ qr/source/i, qr/\b$closed\b/, qr/refused|could not connect/i ],
	},
	{
		name   => 'wrong password for the source (conninfo password=)',
		source => "$source user=alice password='$bad_password'",
		secret => $bad_password,
		expect => [ qr/source/i, qr/password authentication failed/i ],
	},
	{
		name   => 'wrong password for the target (URI)',
		target => $bad_uri,
		secret => $bad_password,
		expect => [ qr/target/i, qr/password authentication failed/i ],
	},
	{
		name      => 'target database not empty, no --resume',
		target    => $tgt->connstr('busy'),
		target_db => 'busy',
		expect    => [ qr/not empty/i ],
	},
	{
		name   => 'source role without SELECT on a table',
		source => "$source user=limited",
		expect => [ qr/secret_stuff/, qr/cannot read|permission|privilege/i ],
	},
	{
		name   => 'target role without CREATE privilege',
		target => "$target user=plain",
		expect => [ qr/target/i, qr/privilege|permission/i ],
	},
	{
		name   => 'no pg_dump (empty --pg-bin, PATH without it)',
		args   => [ '--pg-bin', $empty_bin ],
		env    => { PATH => $empty_bin },
		expect => [ qr/pg_dump/, qr/not found|missing|no such|could not find|cannot find/i ],
	},
	{
		name   => 'pg_restore missing',
		args   => [ '--pg-bin', $half_bin ],
		expect => [ qr/pg_restore/, qr/not found|missing|no such|could not find|cannot find/i ],
	},
	{
		name   => 'pg_dump older than the source server',
		args   => [ '--pg-bin', $old_bin ],
		expect => [ qr/pg_dump/, qr/\b11\b/, qr/older|too old/i ],
	},
);

# What both servers hold; compared after each case.  The target database
# is "app" except in the case that names "busy".
sub fingerprints
{
	my ($target_db) = @_;
	return {
		source => RelocateTest::fingerprint($src, 'app'),
		target => RelocateTest::fingerprint($tgt, $target_db),
	};
}

my %before = (app => fingerprints('app'), busy => fingerprints('busy'));
for my $case (@cases)
{
	my $name = $case->{name};
	my $target_db = $case->{target_db} // 'app';
	my $r = RelocateTest::copy_fails_like(
		$name,
		$case->{expect},
		source  => exists $case->{source} ? $case->{source} : $source,
		target  => exists $case->{target} ? $case->{target} : $target,
		args    => $case->{args} // [],
		env     => { PGPASSFILE => "$tmp/no-pgpass", %{ $case->{env} // {} } },
		secret  => $case->{secret},
		timeout => 90);
	my $after = fingerprints($target_db);
	is_deeply($after->{target}, $before{$target_db}{target},
		"$name: target database \"$target_db\" unchanged");
	is_deeply($after->{source}, $before{$target_db}{source},
		"$name: source unchanged (no slot, session, schema or data left)");
	$before{$target_db} = $after;
}

# The same servers with correct input: the copy works (so the failures
# above came from the bad input), and the fingerprint sees the change.
RelocateTest::copy_ok(
	'correct input',
	source => "$source user=alice password='$good_password'",
	target => $target,
	env    => { PGPASSFILE => "$tmp/no-pgpass" },
	args   => [ '--jobs', '2' ]);
my $after = fingerprints('app');
isnt(join("\n", @{ $after->{target}{schema} }), join("\n", @{ $before{app}{target}{schema} }),
	'correct input: the target fingerprint changed');
RelocateTest::compare_databases($src, $tgt, 'app');

done_testing();

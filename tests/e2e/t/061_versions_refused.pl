# Versions pgrelocate cannot work with are refused up front, once, and
# without suggesting a rerun that would fail the same way:
#   - a PostgreSQL 11 source: check FAILs it (exit 1, the supported range and
#     the fix), copy refuses before creating anything on the target;
#   - a PostgreSQL 16 source with only pg_dump 15 (--pg-bin): start says so
#     once, names the versions and what to install, and does not say "Run the
#     same command"; the target stays empty.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';

{
	my ($src, $tgt) = RelocateTest::new_pair(name => 'v11', dbname => $db, source_major => 11);
	$src->safe_psql($db, 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)');
	my $check = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'check');
	is($check->{exit}, 1, 'check of a PostgreSQL 11 source: exit 1');
	like($check->{stdout},
		qr/^FAIL\s+source\.version\s+the source runs PostgreSQL 11\.\d+: pgrelocate supports PostgreSQL 12 to 18$/m,
		'check: FAIL source.version with the supported range')
	  or diag($check->{stdout});
	like($check->{stdout}, qr/upgrade the source server to PostgreSQL 12 or newer first/,
		'check: the fix');
	RelocateTest::copy_fails_like('copy from PostgreSQL 11',
		[qr/^pgrelocate: error: the source runs PostgreSQL 11\.\d+: pgrelocate supports PostgreSQL 12 to 18$/m,
		 qr/^HINT:  Upgrade it to a supported version first/m],
		FollowTest::conn($src, $tgt, $db));
	is(RelocateTest::query($tgt, $db, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('pgrelocate', 'public') "
			. "AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = pg_namespace.oid)"),
		'0', 'refused: nothing created on the target');
}

{
	my ($src, $tgt) = RelocateTest::new_pair(name => 'v16_old_dump', dbname => $db, source_major => 16);
	$src->safe_psql($db, 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)');
	my $r = RelocateTest::copy_fails_like('start from 16 with pg_dump 15',
		[qr/pg_dump 15 is older than the source server \(16\)/],
		FollowTest::conn($src, $tgt, $db), command => 'start',
		args => [ '--pg-bin', '/usr/lib/postgresql/15/bin' ]);
	my @lines = $r->{stderr} =~ /(pg_dump 15 is older than the source server)/g;
	is(scalar @lines, 1, 'the pg_dump version error is printed once');
	unlike($r->{stderr}, qr/Run the same command/, 'no "Run the same command": it would fail again');
	is(RelocateTest::query($tgt, $db, "SELECT count(*) FROM pg_class WHERE relname = 't'"), '0',
		'refused: the target is empty');
	my $check = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'check',
		args => [ '--pg-bin', '/usr/lib/postgresql/15/bin' ]);
	is($check->{exit}, 1, 'check of a 16 source with pg_dump 15: exit 1');
	like($check->{stdout}, qr/^FAIL\s+tools\.pg_dump\s+.*pg_dump 15 is older than the source server \(16\)/m,
		'check: FAIL tools.pg_dump names both versions');
	like($check->{stdout}, qr/install the PostgreSQL 16 \(or newer\) client programs/,
		'check: says what to install');
	@lines = "$check->{stdout}$check->{stderr}" =~ /(pg_dump 15 is older than the source server)/g;
	is(scalar @lines, 1, 'check: the pg_dump version problem is printed once');
}
done_testing();

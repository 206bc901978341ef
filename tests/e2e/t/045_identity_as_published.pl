# Replica identity judged as apply needs it (issue 13, items 1-3).
#
#   A partitioned table without a primary key (its partitions' changes are
#   published through it, publish_via_partition_root) and a table whose
#   primary key includes a generated column (pgoutput never sends it) are
#   key-less for replication: check lists both with the reason, start
#   without --replica-identity-full refuses them and changes nothing;
#   with it, the root, every partition and the table get REPLICA IDENTITY
#   FULL, and updates (cross-partition too) and deletes on both are
#   followed under load; cleanup restores every identity.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.alpha (k int NOT NULL, v text, at int NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.alpha_1 PARTITION OF public.alpha FOR VALUES FROM (0) TO (1000);
CREATE TABLE public.alpha_2 PARTITION OF public.alpha FOR VALUES FROM (1000) TO (2000);
-- a partition with its own key still reaches the target through the root
ALTER TABLE public.alpha_2 ADD PRIMARY KEY (k);
INSERT INTO public.alpha SELECT i, 'v' || i, i % 2000 FROM generate_series(1, 4000) AS i;
CREATE TABLE public.gen (id int NOT NULL, twice int GENERATED ALWAYS AS (id * 2) STORED,
  note text, PRIMARY KEY (id, twice));
INSERT INTO public.gen (id, note) SELECT i, 'n' || i FROM generate_series(1, 2000) AS i;
CREATE TABLE public.fine (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO public.fine SELECT i FROM generate_series(1, 100) AS i;
SQL
FollowTest::create_marker($src, $db);
my $identities = FollowTest::replica_identities($src, $db);
my %conn = FollowTest::conn($src, $tgt, $db);

# --- check names them, with the reason ---
{
	my $r = RelocateTest::run_copy(%conn, command => 'check', args => ['--json']);
	my $doc = eval { JSON::PP->new->decode($r->{stdout}) } // {};
	my ($c) = grep { $_->{name} eq 'tables.replica_identity' } @{ $doc->{checks} // [] };
	is($c->{status}, 'WARN', 'check: replica identity is not a PASS');
	like($c->{message}, qr/^4 tables without primary key or replica identity: /, 'check: four relations');
	like($c->{message}, qr/public\.alpha \(partitioned, no primary key or replica identity, and its partitions' changes are published as its own\)/,
		'check: the partitioned root without key, and why it matters');
	like($c->{message}, qr/public\.alpha_1, /, 'check: its partition without key (no reason: the plain kind)');
	like($c->{message}, qr/public\.alpha_2 \(partition of public\.alpha, which needs its whole old rows\)/,
		'check: its partition with a key of its own');
	like($c->{message}, qr/public\.gen \(its key includes the generated column twice, which logical decoding never sends\)/,
		'check: the key with a generated column');
	like($c->{fix}, qr/--replica-identity-full/, 'check: the fix names --replica-identity-full');
}

# --- start refuses them without --replica-identity-full ---
{
	my $src_before = RelocateTest::fingerprint($src, $db);
	RelocateTest::copy_fails_like('start without --replica-identity-full',
		[ qr/^pgrelocate: error: 4 tables without primary key or replica identity: public\.alpha \(partitioned/m,
		  qr/public\.gen \(its key includes the generated column twice/, qr/--replica-identity-full/ ],
		%conn, command => 'start');
	is_deeply(RelocateTest::fingerprint($src, $db), $src_before, 'refused start: the source did not change');
	is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'refused start: nothing left behind');
}

# --- followed under load with --replica-identity-full ---
my $script = <<'EOS';
\set k random(1, 4000)
\set g random(1, 2000)
\set at random(0, 1999)
BEGIN;
UPDATE public.alpha SET v = v || 'u', at = :at WHERE k = :k;
UPDATE public.gen SET note = note || 'u' WHERE id = :g;
UPDATE public.fine SET n = n + 1 WHERE id = :g % 100 + 1;
END;
EOS
my $load = FollowTest::load_start($src, $db, script => $script, clients => 2);
my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
is(FollowTest::replica_identities($src, $db),
	"public.alpha f\npublic.alpha_1 f\npublic.alpha_2 f\npublic.fine d\npublic.follow_marker d\npublic.gen f",
	'the root, both partitions and the generated-key table have REPLICA IDENTITY FULL');
FollowTest::poll($src, $db, 'SELECT true', 3);    # let the load run while following
# after the load: its updates move rows between partitions, and a statement
# of ours on the same rows would fail ("tuple to be locked was already moved
# to another partition due to concurrent update")
my $stats = FollowTest::load_stop($load);
$src->safe_psql($db, <<'SQL');
DELETE FROM public.alpha WHERE k % 7 = 0;
DELETE FROM public.gen WHERE id % 5 = 0;
INSERT INTO public.alpha VALUES (5000, 'late', 1500), (5001, 'late', 10);
UPDATE public.alpha SET at = 1999 - at WHERE k BETWEEN 100 AND 200;
SQL
cmp_ok($stats->{processed}, '>', 0, 'the load committed transactions');
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the target caught up');
ok(FollowTest::running($run), 'apply did not stop');
ok(FollowTest::compare_tables($src, $tgt, $db), 'every table equal row by row');
my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT: exit status 0') or diag("stderr:\n$r->{stderr}");
unlike($r->{stderr}, qr/cannot identify the changed row/, 'no apply error');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is(FollowTest::replica_identities($src, $db), $identities, 'cleanup restored every replica identity');

done_testing();

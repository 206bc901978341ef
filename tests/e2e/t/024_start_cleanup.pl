# pgrelocate cleanup, and start's refusal of tables without a key.
#
#   A. start on a source with a table without primary key or replica
#      identity, without --replica-identity-full: fails, names the table,
#      and changes nothing on either side (no slot, no publication, no
#      replica identity change, no state on the target, no session left).
#   B. cleanup while start follows (slot active): refused with a clear
#      message; nothing removed, start goes on applying changes.
#   C. after SIGINT: cleanup removes the slot and the publication (source),
#      the origin, the publication and the pgrelocate schema (target),
#      restores the replica identity; the copied data stays.  Cleanup twice
#      is fine.
#   D. start killed -9 during the copy (its snapshot keeper holds the slot)
#      and E. during the follow: cleanup right after removes everything.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => [ $db, 'app_killed_copy', 'app_killed_follow' ]);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.orders (id int PRIMARY KEY, note text);
INSERT INTO public.orders SELECT i, 'order ' || i FROM generate_series(1, 1000) AS i;
CREATE TABLE public."no key log" (at int, what text);
INSERT INTO public."no key log" SELECT i, 'event ' || i FROM generate_series(1, 100) AS i;
-- rows enough for a copy that lasts a moment (D kills it meanwhile)
CREATE TABLE public.bulk (id int PRIMARY KEY, filler text);
INSERT INTO public.bulk SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, 400000) AS i;
SQL
FollowTest::create_marker($src, $db);
my $identities = FollowTest::replica_identities($src, $db);
like($identities, qr/^public\."no key log" d$/m, 'the key-less table has the default replica identity');

my %conn = FollowTest::conn($src, $tgt, $db);

# --- A. a table without key, no --replica-identity-full ---
{
	my $src_before = RelocateTest::fingerprint($src, $db);
	my $tgt_before = RelocateTest::fingerprint($tgt, $db);
	RelocateTest::copy_fails_like('A: start with a key-less table',
		[ qr/^pgrelocate: error: .*public\."no key log"/m, qr/--replica-identity-full/ ],
		%conn, command => 'start');
	is_deeply(RelocateTest::fingerprint($src, $db), $src_before,
		'A: the source did not change (slots, publications, replica identity, sessions, data)');
	is_deeply(RelocateTest::fingerprint($tgt, $db), $tgt_before,
		'A: the target did not change (no pgrelocate schema, no table, no session)');
	is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'A: no slot, publication, origin or state');
}

# --- B. cleanup while start follows ---
my $run = FollowTest::start_bg($src, $tgt, $db, args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'B: start reached the follow phase');
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'B: start applies changes');
my @running = FollowTest::leftovers($src, $tgt, $db);
{
	my $r = FollowTest::cleanup_run($src, $tgt, $db);
	ok(!$r->{ok} && $r->{exit} > 0 && $r->{signal} == 0, 'B: cleanup refuses while start runs');
	like($r->{stderr}, qr/^pgrelocate: error: replication slot "pgrelocate_\w+" is in use by process \d+/m,
		'B: the message says the slot is in use, and by which process');
	like($r->{stderr}, qr/Stop the pgrelocate process/, 'B: the hint says to stop pgrelocate first');
}
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], \@running, 'B: the refused cleanup removed nothing');
ok(FollowTest::running($run), 'B: start still runs');
$src->safe_psql($db, "INSERT INTO public.orders VALUES (1001, 'after the refused cleanup')");
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'B: start still applies changes');
is(RelocateTest::query($tgt, $db, 'SELECT note FROM public.orders WHERE id = 1001'),
	'after the refused cleanup', 'B: the change is on the target');

# --- C. stop, then cleanup (twice) ---
my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'C: SIGINT: exit status 0') or diag("stderr:\n$r->{stderr}");
FollowTest::cleanup_ok('C: cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [],
	'C: no slot, publication, origin or pgrelocate schema left on either side');
is(FollowTest::replica_identities($src, $db), $identities, 'C: replica identities restored on the source');
ok(FollowTest::wait_for_no_tool_sessions($src, 30) && FollowTest::wait_for_no_tool_sessions($tgt, 30),
	'C: no pgrelocate session left');
FollowTest::compare_tables($src, $tgt, $db);
$r = FollowTest::cleanup_ok('C: cleanup again', $src, $tgt, $db);
like($r->{stderr}, qr/nothing to clean up/, 'C: the second cleanup says there is nothing to do');
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'C: still nothing left');

# --- D, E. cleanup after kill -9 ---
for my $case ([ 'D', 'app_killed_copy', 'copy' ], [ 'E', 'app_killed_follow', 'follow' ])
{
	my ($label, $tdb, $when) = @$case;
	my %c = (source => $src->connstr($db), target => $tgt->connstr($tdb));
	my $h = RelocateTest::start_copy(%c, command => 'start', args => ['--replica-identity-full'],
		timeout => $FollowTest::FOLLOW_TIMEOUT_S);
	if ($when eq 'copy')
	{
		ok(RelocateTest::wait_until($tgt, $tdb,
				"SELECT count(*) > 0 FROM pgrelocate.migration WHERE phase = 'data'", 't', 120),
			"$label: start is copying");
	}
	else
	{
		ok(FollowTest::wait_for_phase($tgt, $tdb, 'follow', 180), "$label: start follows");
	}
	kill 'KILL', $h->{pid};
	my $k = FollowTest::finish($h);
	is($k->{signal}, 9, "$label: start killed -9 during the $when");
	my $cr = RelocateTest::run_copy(%c, command => 'cleanup');
	ok($cr->{ok}, "$label: cleanup right after the kill: exit status 0")
	  or diag("exit $cr->{exit}\nstderr:\n$cr->{stderr}");
	is_deeply([ FollowTest::leftovers($src, $tgt, $tdb) ], [],
		"$label: no slot, publication, origin or pgrelocate schema left");
	is(FollowTest::replica_identities($src, $db), $identities, "$label: replica identities restored");
	ok(FollowTest::wait_for_no_tool_sessions($src, 30),
		"$label: no pgrelocate session (snapshot keeper included) left on the source");
}

done_testing();

# verify never hangs on its in-process follower (issue 13, item 4).  With
# `pgrelocate start` stopped, verify follows in its own process for the
# while; then:
#   A. its summary counts schema differences the same way in the list and
#      in the result line (a sequence value behind is listed, not counted);
#   B. it waits for an older source transaction (even the newest one) to
#      end before it creates its slot or holds the follower; the first
#      SIGINT while it waits stops it at once (exit 130), and it leaves no
#      session, snapshot or temporary slot on the source;
#   B2. the first SIGINT while its slot waits for a younger transaction
#      (the follower held meanwhile) stops it as well, and releases the
#      follower;
#   B3. a verify killed (SIGKILL) while it holds its follower does not
#      block the next verify (its hold expires with its session, not an
#      hour later);
#   C. when its follower stops on an apply error (a unique index only the
#      target has) while verify waits for it to reach the consistent point,
#      verify ends within seconds with the follower's own error, and
#      leaves nothing on the source either.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.items (id serial PRIMARY KEY, code text NOT NULL, note text);
INSERT INTO public.items (code) SELECT 'c' || i FROM generate_series(1, 1000) AS i;
CREATE TABLE public.bulk (id bigint PRIMARY KEY, filler text);
SQL
FollowTest::create_marker($src, $db);
my %conn = FollowTest::conn($src, $tgt, $db);

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
$src->safe_psql($db, "INSERT INTO public.items (code) SELECT 'd' || i FROM generate_series(1, 10) AS i");
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the target caught up');
is(FollowTest::stop_run($run, 'INT')->{exit}, 0, 'start stopped');

# nothing of verify's left on the source: sessions (and so snapshots), slots
sub source_clean
{
	my ($name) = @_;
	ok(FollowTest::wait_for_no_tool_sessions($src, 10), "$name: no pgrelocate session left on the source");
	is(RelocateTest::query($src, $db,
			"SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgrelocate_verify%' OR temporary"),
		'0', "$name: no temporary slot left on the source");
}

# a verify started after $since waits for the older source transaction
sub verify_waits_older
{
	my ($since, $name) = @_;
	ok(RelocateTest::wait_until($src, $db,
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate verify'"
			  . " AND backend_start > '$since' AND state = 'idle'"
			  . " AND query LIKE '%pg_locks%transactionid%ANY%'", 't', 60),
		"$name: verify waits for the older source transaction");
}

# The first SIGINT ends verify at once, saying so.
sub interrupt_verify
{
	my ($h, $name) = @_;
	kill 'INT', $h->{pid};
	my $t0 = time;
	FollowTest::poll($src, $db, 'SELECT false', 0) while FollowTest::running($h) && time - $t0 < 15;
	ok(!FollowTest::running($h), "$name: verify ended within 15 s of the first SIGINT")
	  or kill 'KILL', $h->{pid};
	my $r = RelocateTest::finish_copy($h);
	is($r->{exit}, 130, "$name: exit status 130") or diag($r->{stderr});
	like($r->{stderr}, qr/^pgrelocate: error: .*interrupted/m, "$name: says it was interrupted");
}

# A verify whose slot waits for a transaction younger than verify, its
# follower held meanwhile: an older transaction keeps verify in its
# pre-wait until the younger one began.  Returns verify and the younger
# transaction's session.
sub verify_in_slot_wait
{
	my ($name) = @_;
	my $old = $src->background_psql($db);
	$old->query_safe('BEGIN; SELECT txid_current()');
	my $since = RelocateTest::query($src, $db, 'SELECT clock_timestamp()');
	my $h = RelocateTest::start_copy(%conn, command => 'verify', timeout => 120);
	verify_waits_older($since, $name);
	my $young = $src->background_psql($db);
	$young->query_safe('BEGIN; SELECT txid_current()');
	$old->query_safe('COMMIT');
	$old->quit;
	ok(RelocateTest::wait_until($src, $db,
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgrelocate verify'"
			  . " AND backend_start > '$since' AND state = 'active'"
			  . " AND query LIKE 'CREATE_REPLICATION_SLOT%'", 't', 60),
		"$name: its slot waits for the younger transaction");
	is(RelocateTest::query($tgt, $db, "SELECT count(*) FROM pgrelocate.sync_points WHERE state = 'holding'"),
		'1', "$name: the follower is held meanwhile");
	return ($h, $young);
}

# --- A. the counts of the summary ---
$tgt->safe_psql($db, 'CREATE INDEX items_note_target_only ON public.items (note)');
{
	my $r = RelocateTest::run_copy(%conn, command => 'verify');
	is($r->{exit}, 3, 'A: verify finds the difference (exit 3)') or diag($r->{stderr});
	like($r->{stdout}, qr/^schema differences \(1, and 1 not counted\):\n(.*\n)*  sequence public\.items_id_seq: target behind source \(sequences are set at cutover\)$/m,
		'A: the list counts what the result counts, and the sequence apart');
	like($r->{stdout}, qr/^result: DIFFERENT \(0 row differences, 1 schema difference\)$/m,
		'A: the result line gives the same count');
}
$tgt->safe_psql($db, 'DROP INDEX public.items_note_target_only');

# --- B. the first SIGINT stops a waiting verify ---
{
	my $long = $src->background_psql($db);
	$long->query_safe('BEGIN; SELECT txid_current()');
	my $since = RelocateTest::query($src, $db, 'SELECT clock_timestamp()');
	my $h = RelocateTest::start_copy(%conn, command => 'verify', timeout => 120);
	# its own session (not one of A's verify, which may linger a moment),
	# once its follower runs: it then waits for the older transaction
	verify_waits_older($since, 'B');
	# the open transaction is the newest on the source: verify used to take
	# it for a younger one and go on to create its slot, which waits for it
	# with the follower held, deaf to SIGINT
	ok(!FollowTest::poll($src, $db,
			"SELECT count(*) > 0 FROM pg_replication_slots WHERE slot_name LIKE 'pgrelocate_verify%'", 2),
		'B: no slot created while the older transaction runs');
	is(RelocateTest::query($tgt, $db,
			"SELECT count(*) FROM pgrelocate.sync_points WHERE state IN ('requested', 'holding')"),
		'0', 'B: the follower is not held while verify waits');
	interrupt_verify($h, 'B');
	$long->query_safe('COMMIT');
	$long->quit;
	source_clean('B');
}

# --- B2. the first SIGINT stops verify while its slot waits ---
{
	my ($h, $young) = verify_in_slot_wait('B2');
	interrupt_verify($h, 'B2');
	is(RelocateTest::query($tgt, $db,
			"SELECT count(*) FROM pgrelocate.sync_points WHERE state IN ('requested', 'holding', 'advancing', 'reached')"),
		'0', 'B2: the follower is released');
	# the slot's wait was cancelled: no session left while the younger
	# transaction still runs
	source_clean('B2');
	$young->query_safe('COMMIT');
	$young->quit;
}

# --- B3. a verify killed while it holds its follower ---
{
	my ($h, $young) = verify_in_slot_wait('B3');
	kill 'KILL', $h->{pid};
	is(RelocateTest::finish_copy($h)->{signal}, 9, 'B3: verify killed');
	$young->query_safe('COMMIT');
	$young->quit;
	source_clean('B3');
	is(RelocateTest::query($tgt, $db,
			"SELECT count(*) FROM pgrelocate.sync_points WHERE state IN ('requested', 'holding', 'advancing', 'reached')"),
		'1', 'B3: the killed verify left its sync point live');
	my $r = RelocateTest::run_copy(%conn, command => 'verify');
	is($r->{exit}, 0, 'B3: the next verify is not blocked by it') or diag($r->{stderr});
	is(RelocateTest::query($tgt, $db,
			"SELECT count(*) FROM pgrelocate.sync_points WHERE state IN ('requested', 'holding', 'advancing', 'reached')"),
		'0', 'B3: no live sync point left');
}

# --- C. the follower stops on an apply error while verify waits ---
$tgt->safe_psql($db, 'CREATE UNIQUE INDEX items_code_target_only ON public.items (code)');
# a backlog for the follower to work through first, then the conflict
for my $i (0 .. 9)
{
	$src->safe_psql($db,
		"INSERT INTO public.bulk SELECT g, repeat('x', 50) FROM generate_series($i * 20000 + 1, ($i + 1) * 20000) AS g");
}
$src->safe_psql($db, "UPDATE public.items SET code = 'c1' WHERE id = 2");
{
	my $t0 = time;
	my $h = RelocateTest::start_copy(%conn, command => 'verify', timeout => 600);
	1 while FollowTest::running($h) && time - $t0 < 60 && !FollowTest::poll($src, $db, 'SELECT false', 0);
	my $seconds = time - $t0;
	ok(!FollowTest::running($h), 'C: verify ended on its own') or kill 'KILL', $h->{pid};
	my $r = RelocateTest::finish_copy($h);
	cmp_ok($seconds, '<', 30, 'C: within seconds of the follower\'s error');
	is($r->{exit}, 1, 'C: exit status 1') or diag($r->{stderr});
	like($r->{stderr}, qr/duplicate key value violates unique constraint "items_code_target_only"/,
		'C: the follower\'s own error is shown');
	like($r->{stderr}, qr/^pgrelocate: error: the follower run in this process stopped before it could/m,
		'C: verify says its follower stopped');
	note("verify ended after ${seconds}s");
	source_clean('C');
}

done_testing();

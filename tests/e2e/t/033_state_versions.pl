# The version of the pgrelocate schema on the target (src/base/stateschema.h).
#
# A. A new start makes the state at version 3: pgrelocate.schema_version
#    says 3, and cutovers and sync_points exist from the start.
# B. Version 1, as pgrelocate left its state before versions (no
#    schema_version; cutovers and sync_points not made yet): status reads it
#    as it is and changes nothing; start resumes it, upgrading it to version
#    3 in place (with the per-table sync columns, empty: its tables follow
#    as copied under one snapshot) (logged once, one event), applies what the source committed
#    meanwhile, and verify and a cutover dry run work on the upgraded state.
#    A second resume does not upgrade again.
# C. State that claims version 4: start, status, verify, cutover, rollback
#    and cleanup refuse it with the same error (versions in DETAIL, what to
#    do in HINT) and change nothing on either side (no hook runs, no event);
#    check reports it as a FAIL.  Back at version 3, cleanup removes it all.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.orders (id int PRIMARY KEY, note text);
INSERT INTO public.orders SELECT i, 'order ' || i FROM generate_series(1, 1000) AS i;
SQL
FollowTest::create_marker($src, $db);
my %conn = FollowTest::conn($src, $tgt, $db);

sub q_tgt { return RelocateTest::query($tgt, $db, $_[0]); }

# which of the state's tables exist, and the recorded version
sub schema_shape
{
	return q_tgt(<<'SQL');
SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'pgrelocate' AND c.relkind IN ('r', 'v')
SQL
}

sub upgrades_logged
{
	my ($text) = @_;
	return scalar(() = $text =~ /\[state\] upgraded the pgrelocate state from version 1 to 3/g);
}

my $all_tables = 'chunks,cutovers,events,migration,post_data,replica_identity,schema_version,'
  . 'sync_points,table_progress,tables';

# --- A. a new migration is at version 3 ---
my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'A: start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
is(schema_shape(), $all_tables, 'A: every table of the state exists from the start');
is(q_tgt('SELECT version, upgraded_from IS NULL FROM pgrelocate.schema_version'), "3\x1ft",
	'A: the state is at version 3, not upgraded');
my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'A: SIGINT stops start with exit status 0') or diag($r->{stderr});
is(upgrades_logged($r->{stderr}), 0, 'A: a new state is not upgraded');

# --- B. version 1: read as it is by status, upgraded by start ---
q_tgt('DROP TABLE pgrelocate.schema_version, pgrelocate.cutovers, pgrelocate.sync_points');
q_tgt('ALTER TABLE pgrelocate.tables DROP COLUMN sync_state, DROP COLUMN sync_lsn, '
	  . 'DROP COLUMN root_schema, DROP COLUMN root_name');
my $v1 = 'chunks,events,migration,post_data,replica_identity,table_progress,tables';
is(schema_shape(), $v1, 'B: the state looks as pgrelocate left it before versions');
my $v1_print = RelocateTest::fingerprint($tgt, $db);
{
	my $st = RelocateTest::copy_ok('B: status on version 1 state', command => 'status',
		target => $tgt->connstr($db));
	like($st->{stdout}, qr/\bfollow\b/, 'B: status shows the follow phase');
	is(upgrades_logged($st->{stderr}), 0, 'B: status does not upgrade');
	is_deeply(RelocateTest::fingerprint($tgt, $db), $v1_print, 'B: status changed nothing on the target');
}
$src->safe_psql($db, "INSERT INTO public.orders SELECT i, 'later ' || i FROM generate_series(1001, 1100) AS i");
$run = FollowTest::start_bg($src, $tgt, $db);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run),
	'B: the resumed start applies what the source committed meanwhile');
is(schema_shape(), $all_tables, 'B: the upgrade made the missing tables');
is(q_tgt('SELECT version, upgraded_from FROM pgrelocate.schema_version'), "3\x1f1",
	'B: the state is at version 3, upgraded from 1');
is(q_tgt('SELECT count(*), count(sync_state) FROM pgrelocate.tables'), "2\x1f0",
	'B: the upgrade added the sync columns, empty (tables copied under one snapshot)');
is(q_tgt("SELECT count(*) FROM pgrelocate.events WHERE context = 'state' "
		  . "AND message LIKE 'upgraded the pgrelocate state from version 1 to 3 %'"),
	'1', 'B: the event log records the upgrade once');
is(q_tgt('SELECT count(*) FROM public.orders'), '1100', 'B: every row is on the target');
{
	my $v = RelocateTest::copy_ok('B: verify on the upgraded state', %conn, command => 'verify');
	like($v->{stdout} . $v->{stderr}, qr/match/i, 'B: verify compares and matches');
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my @hooks = map { ("--$_-command", "echo $_ >> '$dir/hooks'") } qw(pause resume switch);
	RelocateTest::copy_ok('B: cutover --dry-run on the upgraded state', %conn,
		command => 'cutover', args => [ @hooks, '--dry-run' ]);
	is(q_tgt('SELECT direction, dry_run, outcome FROM pgrelocate.cutovers'), "cutover\x1ft\x1fdone",
		'B: the dry run is recorded in pgrelocate.cutovers');
}
$r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'B: SIGINT stops start') or diag($r->{stderr});
is(upgrades_logged($r->{stderr}), 1, 'B: start logged the upgrade once');
$run = FollowTest::start_bg($src, $tgt, $db);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'B: start resumes again');
$r = FollowTest::stop_run($run, 'INT');
is(upgrades_logged($r->{stderr}), 0, 'B: the second resume does not upgrade again');
is(q_tgt("SELECT count(*) FROM pgrelocate.events WHERE message LIKE 'upgraded %'"), '1',
	'B: still one upgrade event');
FollowTest::compare_tables($src, $tgt, $db);

# --- C. a version newer than this binary ---
q_tgt('UPDATE pgrelocate.schema_version SET version = 4');
my @refusal = (
	qr/^pgrelocate: error: the pgrelocate state on the target is newer than this pgrelocate$/m,
	qr/^DETAIL:  The target's pgrelocate schema is at version 4; this pgrelocate \([^)]+\) understands versions 1 to 3\.$/m,
	qr/^HINT:  Run this command with the pgrelocate release that last worked on this migration, or a newer one\.$/m,
);
my $src_print = RelocateTest::fingerprint($src, $db);
my $tgt_print = RelocateTest::fingerprint($tgt, $db);
my $dir = PostgreSQL::Test::Utils::tempdir();
my @hooks = map { ("--$_-command", "echo $_ >> '$dir/hooks'") } qw(pause resume switch);
for my $case (
	[ 'start',    %conn, command => 'start' ],
	[ 'status',   command => 'status', target => $tgt->connstr($db) ],
	[ 'verify',   %conn, command => 'verify' ],
	[ 'cutover',  %conn, command => 'cutover', args => [@hooks] ],
	[ 'rollback', %conn, command => 'rollback', args => [@hooks] ],
	[ 'cleanup',  %conn, command => 'cleanup' ])
{
	my ($what, @args) = @$case;
	RelocateTest::copy_fails_like("C: $what refuses version 4", \@refusal, @args);
}
ok(!-e "$dir/hooks", 'C: no cutover or rollback hook ran');
is_deeply(RelocateTest::fingerprint($src, $db), $src_print,
	'C: the source did not change (slot, publication, sessions, data)');
is_deeply(RelocateTest::fingerprint($tgt, $db), $tgt_print,
	'C: the target did not change (state, events, data, sessions)');
is(q_tgt('SELECT version FROM pgrelocate.schema_version'), '4', 'C: the version stays 4');
{
	my $c = RelocateTest::run_copy(%conn, command => 'check');
	like($c->{stdout} . $c->{stderr},
		qr/^FAIL\s+target\.empty\s+the pgrelocate state on the target is version 4, newer than this pgrelocate \([^)]+\) understands \(1 to 3\)$/m,
		'C: check reports the version as a FAIL');
}

q_tgt('UPDATE pgrelocate.schema_version SET version = 3');
FollowTest::cleanup_ok('C: cleanup at version 3', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'C: then nothing is left on either side');

done_testing();

# pgrelocate cutover and rollback with a real pgbouncer and pgbench (8
# clients, TPC-B plus a unique counter row per transaction) running through
# it before, during and after: a dry run changes nothing, the cutover moves
# the clients to the target with no failed transaction, every transaction
# the clients committed is on the target exactly once, sequences on the
# target continue past the source's values, writes on the target reach the
# source, and a rollback loses none of them; status lists the runs with
# their measured pause and outcome.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

use BouncerTest;
use FollowTest;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
FollowTest::setup_pgbench($src, 'app');
my $b = BouncerTest->start($src, 'app');
my $ini_before = slurp_file($b->{ini});

my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow: ' . ${ $run->{stderr} });

my $load = $b->load_start('app', clients => 8);
ok(FollowTest::wait_for_load($src, 'app', 300, 120), 'load through pgbouncer commits on the source');

my @args = ($b->cutover_args('app'), '--max-pause', '3s');

# --- options that cannot work change nothing
RelocateTest::copy_fails_like(
	'cutover without a switch method',
	[qr/nothing to pause and switch clients with/, qr/HINT:.*--pgbouncer/],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover');
RelocateTest::copy_fails_like(
	'cutover naming a database pgbouncer does not have',
	[qr/pgbouncer has no database "nope"/],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover',
	args => [ '--pgbouncer', $b->admin_uri, '--pgbouncer-config', $b->{ini}, '--database', 'nope' ]);

# A config file pgrelocate cannot replace: refused before anything pauses.
chmod 0555, "$b->{dir}" or die "chmod: $!";
RelocateTest::copy_fails_like(
	'cutover with a config directory it cannot write',
	[qr/cannot write \S+pgbouncer\.ini or its directory/, qr/HINT:.*renames it over the old one/],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover', args => [@args]);
chmod 0755, "$b->{dir}" or die "chmod: $!";
is(slurp_file($b->{ini}), $ini_before, 'refused: config file unchanged');
is($b->show_database('app')->{paused}, '0', 'refused: pgbouncer not paused');
is(join(', ', grep { /reverse/ } FollowTest::leftovers($src, $tgt, 'app')), '',
	'refused: no reverse slot or publication created');

# --- dry run: pause, drain, sequences, resume on the source
my $dry = RelocateTest::copy_ok('dry run', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [ @args, '--dry-run' ]);
my ($dry_pause) = $dry->{stdout} =~ /cutover dry run done, nothing switched: writes paused for (\d+) ms/;
ok(defined $dry_pause, 'dry run reports the pause it caused');
is($b->show_database('app')->{port}, $src->port, 'dry run: pgbouncer still points at the source');
is($b->show_database('app')->{paused}, '0', 'dry run: pgbouncer is not paused');
is(slurp_file($b->{ini}), $ini_before, 'dry run: config file unchanged');

# --- the cutover
my $before = FollowTest::counter_rows($src, 'app');
my $cut = RelocateTest::copy_ok('cutover', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [@args]);
my ($pause) = $cut->{stdout} =~ /cutover done: writes paused for (\d+) ms/;
ok(defined $pause, 'cutover reports the measured pause');
diag("cutover pause (PAUSE to RESUME): " . ($pause // '?') . " ms");
like($cut->{stdout}, qr/^  $_\s+\d+ ms$/m, "cutover reports the time of step $_")
  for qw(prepare hold pause fence drain sequences switch resume);
my $row = $b->show_database('app');
is($row->{host}, $tgt->host, 'pgbouncer points at the target');
is($row->{port}, $tgt->port, 'pgbouncer uses the target port');
is($row->{paused}, '0', 'pgbouncer is not paused');
is(FollowTest::migration($tgt, 'app')->{phase}, 'reverse', 'the migration is in phase reverse');
my $forward = RelocateTest::quote_literal(FollowTest::migration($tgt, 'app')->{replication_name});
ok(RelocateTest::wait_until($src, 'app',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = $forward", 't', 60),
	'start retired the forward slot: the old primary keeps no WAL for it');

# Every other line of the config is the same, byte for byte.
my @old = split /\n/, $ini_before, -1;
my @new = split /\n/, slurp_file($b->{ini}), -1;
is(scalar @new, scalar @old, 'config file: same number of lines');
my @changed = grep { $old[$_] ne $new[$_] } 0 .. $#old;
is_deeply([ map { $new[$_] } @changed ],
	[ 'app = host=' . $tgt->host . ' port=' . $tgt->port . ' dbname=app' ],
	'config file: only the entry of app changed, to the target');

# Writes go on, on the target, and come back to the source.
ok(FollowTest::wait_for_load($tgt, 'app', FollowTest::counter_rows($tgt, 'app') + 300, 120),
	'the load commits on the target after the cutover');
my $on_target = FollowTest::counter_rows($tgt, 'app');
ok(FollowTest::wait_for_load($src, 'app', $on_target, 120),
	'writes made on the target reach the source (reverse replication)');
my $stats = $b->load_stop($load);
is($stats->{failed_runs}, 0, 'no pgbench run failed');
is($stats->{failed}, 0, 'no failed transaction');
diag("longest transaction through the cutover: $stats->{max_latency_ms} ms");
cmp_ok(FollowTest::counter_rows($src, 'app'), '>=', $before, 'the source kept what it had');

# Exactly what the clients committed is on the target: the counter and the
# history both have one row per committed transaction.
is(FollowTest::counter_rows($tgt, 'app'), $stats->{processed},
	'target: one counter row per committed transaction');
is(RelocateTest::query($tgt, 'app', 'SELECT count(*) FROM pgbench_history'),
	$stats->{processed}, 'target: one history row per committed transaction');

# Sequences: the target's counter sequence is past every value used.
is(RelocateTest::query($tgt, 'app',
	'SELECT last_value >= (SELECT max(n) FROM txn_counter) FROM txn_counter_n_seq'),
	't', 'target sequence is past every counter value');

# status lists the runs, most recent last, with the pause each reported.
my $status_cutovers = sub {
	my ($name) = @_;
	my $r = RelocateTest::copy_ok($name, command => 'status', target => $tgt->connstr('app'));
	my ($section) = $r->{stdout} =~ /^(cutovers and rollbacks .*?\n)(?:\n|\z)/ms;
	return "(no cutover section)\n$r->{stdout}" unless defined $section;
	$section =~ s/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  /TIME  /mg;
	return $section;
};
my @runs = (
	"TIME  cutover (dry run)   done        paused $dry_pause ms\n",
	"TIME  cutover             done        paused $pause ms\n");
is($status_cutovers->('status after the cutover'),
	"cutovers and rollbacks (2, most recent last)\n" . join('', @runs),
	'status after the cutover: the dry run and the cutover, done, with their pauses');

# Running the cutover again changes nothing.
my $again = RelocateTest::copy_ok('cutover again', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [@args]);
like($again->{stderr}, qr/points at the target already: nothing to do/, 'a second cutover does nothing');

# --- rollback: every write made on the target is on the source
my $rb = RelocateTest::copy_ok('rollback', FollowTest::conn($src, $tgt, 'app'),
	command => 'rollback', args => [@args]);
my ($rb_pause) = $rb->{stdout} =~ /rollback done: writes paused for (\d+) ms/;
ok(defined $rb_pause, 'rollback reports the measured pause');
diag("rollback pause (PAUSE to RESUME): " . ($rb_pause // '?') . " ms");
is($b->show_database('app')->{port}, $src->port, 'rollback: pgbouncer points at the source again');
is(slurp_file($b->{ini}), $ini_before, 'rollback: the config file is as it was, byte for byte');
is(FollowTest::migration($tgt, 'app')->{phase}, 'rolled-back', 'the migration is rolled back');
is($status_cutovers->('status after the rollback'),
	"cutovers and rollbacks (3, most recent last)\n" . join('', @runs)
	  . "TIME  rollback            done        paused $rb_pause ms\n",
	'status after the rollback: the rollback last, done, with its pause');
my $doc = eval {
	JSON::PP->new->decode(
		RelocateTest::copy_ok('status --json after the rollback',
			command => 'status', target => $tgt->connstr('app'), args => ['--json'])->{stdout});
} // {};
is(join(', ', map { "$_->{direction} $_->{dry_run} $_->{outcome} $_->{pause_ms}" }
		@{ $doc->{cutovers}{latest} // [] }),
	"cutover 1 done $dry_pause, cutover 0 done $pause, rollback 0 done $rb_pause",
	'status --json: the runs, oldest first, with outcome and pause');
is($doc->{cutovers}{total}, 3, 'status --json: three runs in all');
is(FollowTest::counter_rows($src, 'app'), $stats->{processed},
	'source: one counter row per committed transaction (rollback lost none)');
ok(FollowTest::compare_tables($src, $tgt, 'app'), 'after the rollback the source equals the target');
my $r = FollowTest::finish($run);
ok($r->{ok}, 'start ends by itself after the rollback') or diag($r->{stderr});

# Clients write on the source again; its sequences continue past the
# target's values (no duplicate key).
my $load2 = $b->load_start('app', clients => 8);
ok(FollowTest::wait_for_load($src, 'app', $stats->{processed} + 200, 120),
	'the load commits on the source after the rollback');
my $stats2 = $b->load_stop($load2);
is($stats2->{failed} + $stats2->{failed_runs}, 0, 'after the rollback: no failed transaction');
is(FollowTest::counter_rows($src, 'app'), $stats->{processed} + $stats2->{processed},
	'source: every transaction of both loads');

# The record of the runs.
is(RelocateTest::query($tgt, 'app',
	"SELECT string_agg(direction || ' ' || dry_run || ' ' || outcome || ' ' || step, ', ' ORDER BY id) "
	  . 'FROM pgrelocate.cutovers'),
	'cutover true done pausing, cutover false done switching, rollback false done switching',
	'pgrelocate.cutovers records the runs');

FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
is(join(', ', FollowTest::leftovers($src, $tgt, 'app')), '', 'cleanup leaves nothing behind');
$b->stop;
done_testing();

# pgrelocate cutover with a real pgbouncer and pgbench (8 clients, TPC-B
# plus a unique counter row per transaction) running through it before,
# during and after: a dry run changes nothing, the cutover moves the
# clients to the target with no failed transaction, every transaction the
# clients committed is on the target exactly once, and sequences on the
# target continue past the source's values.
use strict;
use warnings;

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

# --- dry run: pause, drain, sequences, resume on the source
my $dry = RelocateTest::copy_ok('dry run', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [ @args, '--dry-run' ]);
like($dry->{stdout}, qr/cutover dry run done, nothing switched: writes paused for \d+ ms/,
	'dry run reports the pause it caused');
is($b->show_database('app')->{host}, $src->host, 'dry run: pgbouncer still points at the source');
is($b->show_database('app')->{paused}, '0', 'dry run: pgbouncer is not paused');
is(slurp_file($b->{ini}), $ini_before, 'dry run: config file unchanged');

# --- the cutover
my $before = FollowTest::counter_rows($src, 'app');
my $cut = RelocateTest::copy_ok('cutover', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [ @args, '--no-reverse' ]);
my ($pause) = $cut->{stdout} =~ /cutover done: writes paused for (\d+) ms/;
ok(defined $pause, 'cutover reports the measured pause');
diag("cutover pause (PAUSE to RESUME): " . ($pause // '?') . " ms");
like($cut->{stdout}, qr/^  $_\s+\d+ ms$/m, "cutover reports the time of step $_")
  for qw(prepare pause fence drain sequences switch resume);
my $row = $b->show_database('app');
is($row->{host}, $tgt->host, 'pgbouncer points at the target');
is($row->{port}, $tgt->port, 'pgbouncer uses the target port');
is($row->{paused}, '0', 'pgbouncer is not paused');

# Every other line of the config is the same, byte for byte.
my @old = split /\n/, $ini_before, -1;
my @new = split /\n/, slurp_file($b->{ini}), -1;
is(scalar @new, scalar @old, 'config file: same number of lines');
my @changed = grep { $old[$_] ne $new[$_] } 0 .. $#old;
is_deeply([ map { $new[$_] } @changed ],
	[ 'app = host=' . $tgt->host . ' port=' . $tgt->port . ' dbname=app' ],
	'config file: only the entry of app changed, to the target');

# Writes go on, on the target.
ok(FollowTest::wait_for_load($tgt, 'app', FollowTest::counter_rows($tgt, 'app') + 300, 120),
	'the load commits on the target after the cutover');
my $stats = $b->load_stop($load);
is($stats->{failed_runs}, 0, 'no pgbench run failed');
is($stats->{failed}, 0, 'no failed transaction');
diag("longest transaction through the cutover: $stats->{max_latency_ms} ms");
my $src_after = FollowTest::counter_rows($src, 'app');
cmp_ok($src_after, '>=', $before, 'the source kept what it had');

# Exactly what the clients committed is on the target: the counter and the
# history both have one row per committed transaction.
is(FollowTest::counter_rows($tgt, 'app'), $stats->{processed},
	'target: one counter row per committed transaction');
is(RelocateTest::query($tgt, 'app', 'SELECT count(*) FROM pgbench_history'),
	$stats->{processed}, 'target: one history row per committed transaction');
is(RelocateTest::query($tgt, 'app', 'SELECT count(*) - count(DISTINCT n) FROM txn_counter'),
	'0', 'target: counter values unique');
# Every source row is on the target, unchanged.
my $src_rows = RelocateTest::query($src, 'app', 'SELECT n, client, at FROM txn_counter ORDER BY n');
my $tgt_rows = RelocateTest::query($tgt, 'app', 'SELECT n, client, at FROM txn_counter ORDER BY n');
my %tgt_has = map { $_ => 1 } split /\n/, $tgt_rows;
my @lost = grep { !$tgt_has{$_} } split /\n/, $src_rows;
is(scalar @lost, 0, 'every counter row of the source is on the target')
  or diag('missing: ' . join(', ', @lost[0 .. ($#lost < 9 ? $#lost : 9)]));

# Sequences: the target's counter sequence is past every value used, and
# a new insert on the target does not collide.
is(RelocateTest::query($tgt, 'app',
	'SELECT last_value >= (SELECT max(n) FROM txn_counter) FROM txn_counter_n_seq'),
	't', 'target sequence is past every counter value');
$b->query('app', "INSERT INTO txn_counter (n, client) VALUES (nextval('txn_counter_n_seq'), -1)");
pass('an insert through pgbouncer after the cutover uses a fresh sequence value');

# The record of both runs.
is(RelocateTest::query($tgt, 'app',
	"SELECT string_agg(direction || ' ' || dry_run || ' ' || outcome || ' ' || step, ', ' ORDER BY id) "
	  . 'FROM pgrelocate.cutovers'),
	'cutover true done paused, cutover false done switching',
	'pgrelocate.cutovers records both runs');

# Running it again changes nothing.
my $again = RelocateTest::copy_ok('cutover again', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [ @args, '--no-reverse' ]);
like($again->{stderr}, qr/points at the target already: nothing to do/, 'a second cutover does nothing');

FollowTest::stop_run($run);
FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
$b->stop;
done_testing();

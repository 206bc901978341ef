# cutover without pgbouncer: --pause-command, --resume-command and
# --switch-command run in order with the new side in the environment; a
# failing pause command aborts with the resume command run and nothing
# switched; --sequence-headroom moves the target's sequences further; a
# target sequence further along than the source's (in its own direction)
# keeps its value.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use FollowTest;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
FollowTest::setup_pgbench($src, 'app');
my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow');
my $load = FollowTest::load_start($src, 'app', clients => 2);
ok(FollowTest::wait_for_load($src, 'app', 100, 60), 'the load commits on the source');

my $dir = PostgreSQL::Test::Utils::tempdir();
my $events = "$dir/events";
my $hook = sub { my ($what) = @_; return qq{echo "$what \$PGRELOCATE_DIRECTION \$PGRELOCATE_NEW_HOST \$PGRELOCATE_NEW_PORT \$PGRELOCATE_NEW_DBNAME" >> '$events'}; };
my @hooks = (
	'--pause-command', $hook->('pause'),
	'--resume-command', $hook->('resume'),
	'--switch-command', $hook->('switch'));

# A pause command that fails: nothing switched, the resume command ran.
RelocateTest::copy_fails_like(
	'a failing pause command',
	[ qr/\[cutover\] aborted: clients stay on the source/, qr/the pause command failed/ ],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover',
	args => [ '--pause-command', $hook->('pause') . '; exit 3', '--resume-command', $hook->('resume'),
		'--switch-command', $hook->('switch') ]);
my $new = join(' ', $tgt->host, $tgt->port, 'app');
is(slurp_file($events), "pause cutover $new\nresume cutover $new\n",
	'failing pause: the resume command ran, the switch command did not');
is(FollowTest::migration($tgt, 'app')->{phase}, 'follow', 'failing pause: the migration still follows');
unlink $events;

# --sequence-headroom with a dry run: the target's sequences are set N
# increments beyond the source's.
my $stats = FollowTest::load_stop($load);
my $dry = RelocateTest::copy_ok('dry run with headroom', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [ @hooks, '--dry-run', '--sequence-headroom', '1000' ]);
my $src_seq = RelocateTest::query($src, 'app', 'SELECT last_value FROM txn_counter_n_seq');
my $tgt_seq = RelocateTest::query($tgt, 'app', 'SELECT last_value FROM txn_counter_n_seq');
cmp_ok($src_seq, '>=', 100, 'the source sequence was used');
is($tgt_seq, $src_seq + 1000, 'headroom: the target sequence is 1000 beyond the source');
is(slurp_file($events), "pause cutover $new\nresume cutover $new\n", 'dry run: pause and resume, no switch');
unlink $events;

RelocateTest::copy_fails_like('--sequence-headroom takes a number',
	[qr/--sequence-headroom expects a whole number of 0 or more, not "lots"/],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover',
	args => [ @hooks, '--sequence-headroom', 'lots' ]);
RelocateTest::copy_fails_like('pgbouncer and hooks together',
	[qr/--pgbouncer cannot be combined with --pause-command/],
	FollowTest::conn($src, $tgt, 'app'), command => 'cutover',
	args => [ @hooks, '--pgbouncer', 'host=127.0.0.1', '--pgbouncer-config', "$dir/x.ini", '--database', 'app' ]);

# Sequences the target has moved further than the source keep their value
# (they may have handed those out); the others get the source's.  Created on
# the source (start replays the DDL on the target), their values set on each
# side: values are not replicated.
my $seq_ddl = <<'SQL';
CREATE SEQUENCE public.seq_asc;
CREATE SEQUENCE public.seq_desc INCREMENT BY -1 MINVALUE -1000000 MAXVALUE -1 START -1;
CREATE SEQUENCE public.seq_plain;
CREATE SEQUENCE public.seq_desc_behind INCREMENT BY -1 MINVALUE -1000000 MAXVALUE -1 START -1;
CREATE SEQUENCE public.seq_fresh;
SQL
$src->safe_psql('app', $seq_ddl . <<'SQL');
SELECT setval('seq_asc', 100), setval('seq_desc', -100), setval('seq_plain', 300),
       setval('seq_desc_behind', -300);
SQL
ok(FollowTest::poll($tgt, 'app', "SELECT to_regclass('public.seq_fresh') IS NOT NULL", 60, $run),
	'the sequences created on the source exist on the target');
$tgt->safe_psql('app', <<'SQL');
SELECT setval('seq_asc', 500), setval('seq_desc', -500), setval('seq_plain', 10),
       setval('seq_desc_behind', -20), nextval('seq_fresh');
SQL

# The cutover with hooks, without the way back, and without a running
# start: the cutover follows in its own process, catching up first.
my $r = FollowTest::stop_run($run);
ok($r->{ok}, 'start stops on SIGINT') or diag($r->{stderr});
my $load2 = FollowTest::load_start($src, 'app', clients => 2);
ok(FollowTest::wait_for_load($src, 'app', FollowTest::counter_rows($src, 'app') + 200, 60),
	'the load commits on the source while nothing follows');
my $stats2 = FollowTest::load_stop($load2);
my $cut = RelocateTest::copy_ok('cutover with hooks', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [ @hooks, '--no-reverse' ]);
like($cut->{stdout}, qr/cutover done: writes paused for \d+ ms/, 'it reports the pause');
like($cut->{stderr}, qr/no pgrelocate start runs: following changes in this process meanwhile/,
	'without start, the cutover follows in its own process');
is(slurp_file($events), "pause cutover $new\nswitch cutover $new\nresume cutover $new\n",
	'pause, switch, resume, in that order, with the target in the environment');
is(FollowTest::migration($tgt, 'app')->{phase}, 'done', '--no-reverse: the migration is done');

my $seqs = q{SELECT string_agg(format('%s=%s/%s', sequencename, last_value, last_value IS NOT NULL), ' '
  ORDER BY sequencename) FROM pg_sequences WHERE sequencename LIKE 'seq\_%'};
is(RelocateTest::query($tgt, 'app', $seqs),
	'seq_asc=500/t seq_desc=-500/t seq_desc_behind=-300/t seq_fresh=1/t seq_plain=300/t',
	'sequences: ahead on the target (ascending, descending, handed out once) kept, the others set');
# The dry run's headroom of 1000 stays unless the load went further since.
my $counter_src = RelocateTest::query($src, 'app', 'SELECT last_value FROM txn_counter_n_seq');
my $counter_ahead = $tgt_seq > $counter_src;
is(RelocateTest::query($tgt, 'app', 'SELECT last_value FROM txn_counter_n_seq'),
	$counter_ahead ? $tgt_seq : $counter_src, 'the counter sequence: the further of the two');
my $kept = join(', ', 'public.seq_asc', 'public.seq_desc', 'public.seq_fresh',
	$counter_ahead ? ('public.txn_counter_n_seq') : ());
my $nkept = $counter_ahead ? 4 : 3;
like($cut->{stdout}, qr/^sequences: ${\(6 - $nkept)} set to the source's value, $nkept kept ahead on the target: \Q$kept\E$/m,
	'the report counts and names the sequences kept ahead');
FollowTest::counter_exact($src, $tgt, 'app', $stats->{processed} + $stats2->{processed});

# status lists the three runs: the aborted one with its reason.
my ($dry_pause) = $dry->{stdout} =~ /writes paused for (\d+) ms/;
my ($cut_pause) = $cut->{stdout} =~ /writes paused for (\d+) ms/;
my $st = RelocateTest::copy_ok('status after the cutover', command => 'status',
	target => $tgt->connstr('app'));
my ($runs) = $st->{stdout} =~ /^(cutovers and rollbacks .*?\n)(?:\n|\z)/ms;
$runs //= '';
$runs =~ s/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  /TIME  /mg;
like($runs, qr/\Acutovers and rollbacks \(3, most recent last\)
TIME  cutover             aborted     paused \d+ ms: the pause command failed or took longer than --max-pause
TIME  cutover \(dry run\)   done        paused $dry_pause ms
TIME  cutover             done        paused $cut_pause ms
\z/, 'status: the aborted run with its reason, the dry run, the cutover, with their pauses');

FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
is(join(', ', FollowTest::leftovers($src, $tgt, 'app')), '', 'cleanup leaves nothing behind');
done_testing();

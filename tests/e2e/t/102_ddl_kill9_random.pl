# kill -9 of pgrelocate start at random moments while schema changes are
# captured and replayed (issue 17), under a pgbench load.
#
# A script runs 24 steps on the source, one simple-query string each, half
# a second apart: ADD COLUMN and an UPDATE of it in one string, an index,
# a table created and filled in one transaction, a column dropped.  Start
# is killed with SIGKILL ten times at random moments meanwhile, and started
# again each time.
#
# Expected: no run fails on its own (a command replayed twice would fail:
# "column ... already exists"); every step is on the target once (the event
# log holds each replay exactly once, in the source's order); verify-style
# comparison of every table and the schema equal; the load's counter exact.
#
# The moments are random: the seed is printed (FOLLOW_TEST_SEED=N replays).
use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use RelocateTest;
use FollowTest;

my $seed = $ENV{FOLLOW_TEST_SEED} // int(rand(1 << 30));
srand($seed);
note("random seed: $seed (FOLLOW_TEST_SEED=$seed to replay)");

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
FollowTest::setup_pgbench($src, $db, scale => 1);
$src->safe_psql($db, 'CREATE TABLE public.items (id int PRIMARY KEY, name text); '
	  . "INSERT INTO public.items SELECT g, 'i' || g FROM generate_series(1, 2000) g");
my @args = ('--replica-identity-full');

my $load = FollowTest::load_start($src, $db, clients => 3);
ok(FollowTest::wait_for_load($src, $db, 30, 60), 'the load writes to the source');
my $run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
ok(FollowTest::poll($tgt, $db,
		"SELECT coalesce((SELECT phase = 'follow' FROM pgrelocate.migration), false)", 180, $run),
	'start reached the follow phase');

# the steps, and the commands each replays (the expected event log)
my (@steps, @expected);
for my $i (1 .. 8)
{
	push @steps, "ALTER TABLE public.items ADD COLUMN c$i int; "
	  . "UPDATE public.items SET c$i = id * $i WHERE id % 8 = $i % 8";
	push @steps, "CREATE INDEX items_c${i}_idx ON public.items (c$i)";
	push @expected, 'ALTER TABLE', 'CREATE INDEX';
	if ($i % 2 == 0)
	{
		push @steps, "BEGIN; CREATE TABLE public.t$i (id int PRIMARY KEY, v int); "
		  . "INSERT INTO public.t$i SELECT g, g FROM generate_series(1, 100) g; COMMIT";
		push @expected, 'CREATE TABLE';
	}
	else
	{
		push @steps, 'ALTER TABLE public.items DROP COLUMN c' . ($i - 1 || 8)
		  if $i > 1;
		push @steps, "UPDATE public.items SET name = name || '$i' WHERE id <= 10" if $i == 1;
		push @expected, 'ALTER TABLE' if $i > 1;
	}
}
my $dir = PostgreSQL::Test::Utils::tempdir();
open my $fh, '>', "$dir/steps" or die;
print $fh "$_\n" for @steps;
close $fh;
my $ddl_out = '';
my $ddl = IPC::Run::start(
	[ 'bash', '-c',
		'while IFS= read -r l; do psql -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -d "$3" -c "$l" '
		  . '|| echo "step failed: $l"; sleep 0.5; done < "$4"; echo "steps done"',
		'steps', $src->host, $src->port, $db, "$dir/steps" ],
	'<', \undef, '>', \$ddl_out, '2>&1');

# kill -9 at random moments while the steps run
my (@kills, @self_exits, @replaying);
for my $k (1 .. 10)
{
	Time::HiRes::sleep(0.3 + rand(1.5));    # a random moment, not a wait for a condition
	kill 'KILL', $run->{pid};
	my $r = RelocateTest::finish_copy($run);
	push @replaying, $k if $r->{stderr} =~ /\[apply\] replaying /;
	if ($r->{signal} == 9) { push @kills, $k; }
	else { push @self_exits, "run $k exited by itself (exit $r->{exit}):\n$r->{stderr}"; }
	$run = FollowTest::start_bg($src, $tgt, $db, args => \@args);
}
$ddl->finish;
like($ddl_out, qr/steps done\n\z/, 'the steps ran');
unlike($ddl_out, qr/step failed/, 'every step succeeded on the source') or diag($ddl_out);
is(scalar @self_exits, 0, 'every run went on until killed (none failed on its own)')
  or diag(join "\n---\n", @self_exits);
cmp_ok(scalar @kills, '>=', 10, 'ten kill -9 of a running start');
note('runs killed after replaying a schema change: ' . join(' ', @replaying));
cmp_ok(scalar @replaying, '>=', 3, 'kills landed among schema-change replays (3 runs or more)');

my $stats = FollowTest::load_stop($load);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, timeout => 180),
	'caught up after the steps and the load');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);
is(RelocateTest::query($tgt, $db,
		"SELECT string_agg(split_part(message, ' at ', 1), ',' ORDER BY id) FROM pgrelocate.events "
		  . "WHERE context = 'apply' AND message LIKE 'replayed %'"),
	join(',', map { "replayed $_" } @expected),
	'each schema change was replayed once, in the source\'s order');
my $st = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'status',
	args => ['--json']);
like($st->{stdout}, qr/"schema_changes": \{\s*"replayed": ${\ scalar @expected},\s*"refused": 0\s*\}/,
	'status counts every replayed schema change once');

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'start stops on SIGINT') or diag($r->{stderr});
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
done_testing();

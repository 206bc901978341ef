# pgrelocate start copies tables at their own points while the stream runs:
# no snapshot on the source is older than one group's copy.
#
# Six tables of a few MB each (pgbench's four, two of our own) under a
# pgbench load; start with --sync-group-size 1MB (every table bigger than
# that: each gets a temporary slot and snapshot of its own) and --jobs 2.
# Every 200 ms a separate connection samples the source: the oldest
# backend_xmin of pgrelocate's sessions (the VACUUM horizon it holds) and
# the temporary slots.  Expected:
#   - several temporary slots and distinct snapshots (xmins) were used;
#   - no xmin of ours was held longer than the longest single table's copy
#     (from its chunks' times in the state) plus a 3 s margin, and less than
#     the whole data phase;
#   - every table is ready on the target at its own consistent point;
#   - after the load: every table equal row by row, the counter exactly once.
# Then the same copy with --one-snapshot into a second target database, for
# comparison: its oldest xmin is held for about the whole copy (longer than
# the per-table one's).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use IPC::Run ();
use File::Temp ();
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_tcp => 1);
my $scale = 2;
FollowTest::setup_pgbench($src, $db, scale => $scale);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.docs (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO public.docs SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 120000) g;
CREATE TABLE public.events (id bigint PRIMARY KEY, kind int NOT NULL, note text);
INSERT INTO public.events SELECT g, g % 7, md5(g::text) FROM generate_series(1, 150000) g;
-- pgbench's small tables grow past 1MB so each is a group of its own
INSERT INTO pgbench_branches SELECT g, 0, repeat('b', 80) FROM generate_series(3, 12000) g;
INSERT INTO pgbench_tellers SELECT g, 1, 0, repeat('t', 80) FROM generate_series(21, 12000) g;
ANALYZE;
SQL

# The sampler: one line per 200 ms, "epoch|min xmin of our sessions|temp slots".
my $sample_sql = q{SELECT extract(epoch FROM clock_timestamp())::numeric(20,3) || '|' || }
  . q{coalesce((SELECT backend_xmin::text FROM pg_stat_activity WHERE application_name LIKE }
  . q{'pgrelocate%' AND backend_xmin IS NOT NULL ORDER BY age(backend_xmin) DESC LIMIT 1), '') }
  . q{|| '|' || coalesce((SELECT string_agg(slot_name, ',' ORDER BY slot_name) }
  . q{FROM pg_replication_slots WHERE temporary), '')};
sub sampler_start
{
	my $dir = File::Temp->newdir();
	my ($stop, $file) = ("$dir/stop", "$dir/samples");
	# a sample every 200 ms, each on its own psql in the background (a slow
	# answer under load does not delay the next); lines sorted by time later
	my $cmd = "while [ ! -e '$stop' ]; do psql -XAtq -h '" . $src->host . "' -p " . $src->port
	  . " -d $db -c \"$sample_sql\" >> '$file' 2>/dev/null & sleep 0.2; done; wait";
	my $h = IPC::Run::start([ 'bash', '-c', $cmd ], '<', \undef, '>', \my $out, '2>&1');
	return { h => $h, stop => $stop, file => $file, dir => $dir };
}

# Max held age of an xmin (first seen to each later sample with it), the
# distinct xmins and temporary slots seen.
sub sampler_stop
{
	my ($s) = @_;
	open my $fh, '>', $s->{stop} or die;
	close $fh;
	$s->{h}->finish;
	my (%first, %slots, $max, $n);
	$max = 0;
	open $fh, '<', $s->{file} or die "no samples: $!";
	my @lines = sort { (split /\|/, $a)[0] <=> (split /\|/, $b)[0] } <$fh>;
	close $fh;
	for my $l (@lines)
	{
		chomp $l;
		my ($t, $xmin, $slots) = split /\|/, $l, -1;
		next unless defined $slots;
		$n++;
		$slots{$_} = 1 for grep { $_ ne '' } split /,/, $slots;
		next if $xmin eq '';
		$first{$xmin} //= $t;
		$max = $t - $first{$xmin} if $t - $first{$xmin} > $max;
	}
	return { max_age => $max, xmins => scalar(keys %first), slots => scalar(keys %slots),
		samples => $n };
}

# The longest copy of one table (first chunk start to last chunk done),
# and the whole data phase, in seconds, from the state.
sub copy_spans
{
	my ($dbname) = @_;
	my $out = RelocateTest::query($tgt, $dbname, <<'SQL');
WITH c AS (SELECT table_no, done_at - seconds * interval '1 s' AS s, done_at AS e
           FROM pgrelocate.chunks)
SELECT round(max(x)::numeric, 2) || '|' ||
  round(extract(epoch FROM (SELECT max(e) - min(s) FROM c))::numeric, 2)
FROM (SELECT extract(epoch FROM max(e) - min(s)) AS x FROM c GROUP BY table_no) t
SQL
	my ($table, $all) = split /\|/, $out;
	return ($table, $all);
}

# From now: seconds until the target's origin first moved (the first
# applied source transaction) and until the follow phase.
sub watch_run
{
	my ($dbname, $timeout) = @_;
	my $t0 = Time::HiRes::time();
	my ($first, $follow);
	while (Time::HiRes::time() - $t0 < $timeout)
	{
		my $o = eval {
			RelocateTest::query($tgt, $dbname,
				"SELECT CASE WHEN to_regclass('pgrelocate.migration') IS NULL THEN '' ELSE "
				  . "(SELECT phase || '|' || CASE WHEN pg_replication_origin_oid(replication_name) "
				  . "IS NULL THEN '' ELSE coalesce(pg_replication_origin_progress(replication_name, "
				  . "true)::text, '') END FROM pgrelocate.migration) END");
		} // '';
		my ($phase, $lsn) = split /\|/, $o, -1;
		$first //= Time::HiRes::time() - $t0 if defined $lsn && $lsn ne '' && $lsn ne '0/0';
		if (($phase // '') eq 'follow')
		{
			$follow = Time::HiRes::time() - $t0;
			last;
		}
		Time::HiRes::usleep(100_000);
	}
	return ($first // -1, $follow);
}

my $load = FollowTest::load_start($src, $db, scale => $scale, seconds => 3);
ok(FollowTest::wait_for_load($src, $db, 100, 60), 'the load writes to the source');

# 1. per-table sync (the default)
my $sampler = sampler_start();
my $run = FollowTest::start_bg($src, $tgt, $db,
	args => [ '--replica-identity-full', '--jobs', 2, '--sync-group-size', '1MB' ]);
my ($per_first, $per_follow) = watch_run($db, 240);
ok(defined $per_follow, 'start reached the follow phase') or diag(${ $run->{stderr} });
my $per = sampler_stop($sampler);
my ($table_s, $all_s) = copy_spans($db);
note(sprintf('per table: %d samples, %d temporary slots, %d distinct xmins, oldest held %.2f s; '
	  . 'longest table copy %.2f s, data phase %.2f s',
	$per->{samples}, $per->{slots}, $per->{xmins}, $per->{max_age}, $table_s, $all_s));
cmp_ok($per->{samples}, '>=', 4 * $all_s, 'the sampler ran during the copy (4+ per second)');
cmp_ok($per->{slots}, '>=', 4, 'several temporary slots (one per group) were used');
cmp_ok($per->{xmins}, '>=', 2, 'more than one distinct snapshot held the horizon, in turn');
cmp_ok($per->{max_age}, '<=', $table_s + 3,
	'no xmin of ours was held longer than the longest table copy (+3 s)');
is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FILTER (WHERE sync_state = 'ready') = count(*) AND "
		  . "count(DISTINCT sync_lsn) >= 4 FROM pgrelocate.tables"),
	't', 'every table is ready, at (mostly) distinct consistent points');
is(RelocateTest::query($src, $db, 'SELECT count(*) FROM pg_replication_slots WHERE temporary'),
	'0', 'no temporary slot is left once the copy is done');
my $st = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'status');
like($st->{stdout}, qr/^sync +tables at their own points: 8 ready, 0 syncing, 0 pending$/m,
	'status: the tables per sync state');
like($st->{stdout}, qr/^source hold +.*oldest [\d.]+ s \(backend_xmin age \d+\), 0 temporary slots$/m,
	'status: what pgrelocate holds on the source');

ok(FollowTest::wait_for_load($src, $db, FollowTest::counter_rows($src, $db) + 300, 60),
	'the load goes on while start follows');
my $stats = FollowTest::load_stop($load);
is($stats->{failed_runs}, 0, 'every pgbench run succeeded') or diag($stats->{output});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db), 'the target caught up');
FollowTest::compare_tables($src, $tgt, $db);
FollowTest::counter_exact($src, $tgt, $db, $stats);
my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT in the follow phase: exit 0') or diag($r->{stderr});
like($r->{stderr}, qr/\[sync group \d+\] 1 table copied as of/, 'the groups are logged');

# 2. the same copy under the slot's one snapshot, for comparison (the first
# migration removed: one migration of a source at a time)
FollowTest::cleanup_ok('cleanup of the per-table migration', $src, $tgt, $db);
$tgt->safe_psql('postgres', 'CREATE DATABASE app2');
$load = FollowTest::load_start($src, $db, scale => $scale, seconds => 3);
$sampler = sampler_start();
my $one = RelocateTest::start_copy(
	source => "host=127.0.0.1 port=" . $src->port . " dbname=$db",
	target => $tgt->connstr('app2'),
	command => 'start',
	timeout => 600,
	args => [ '--replica-identity-full', '--jobs', 2, '--one-snapshot' ]);
my ($one_first, $one_follow) = watch_run('app2', 240);
ok(defined $one_follow, '--one-snapshot reached follow') or diag(${ $one->{stderr} });
my $single = sampler_stop($sampler);
note(sprintf('first applied change after %.2f s per table, %.2f s under one snapshot (-1: only '
	  . 'in the follow phase); follow phase after %.2f s and %.2f s',
	$per_first, $one_first, $per_follow, $one_follow // -1));
ok($per_first >= 0 && $per_first < $per_follow,
	'per table: changes apply while the tables are copied (before the follow phase)');
is($one_first, -1, 'under one snapshot: nothing applies before the follow phase');
my (undef, $one_all) = copy_spans('app2');
note(sprintf('one snapshot: %d samples, oldest xmin held %.2f s; data phase %.2f s',
	$single->{samples}, $single->{max_age}, $one_all));
cmp_ok($single->{max_age}, '>', $per->{max_age},
	'the one snapshot held the horizon longer than any per-table snapshot');
is(RelocateTest::query($tgt, 'app2', 'SELECT count(*) FROM pgrelocate.tables WHERE sync_state IS NOT NULL'),
	'0', '--one-snapshot does not track tables per table');
$stats = FollowTest::load_stop($load);
$r = FollowTest::stop_run($one, 'INT');
is($r->{exit}, 0, '--one-snapshot run stops with exit 0') or diag($r->{stderr});

done_testing();

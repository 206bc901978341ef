# pgrelocate status: what it reports matches the state and the servers.
#
# A. A target without pgrelocate state: status fails (exit 1) with "no
#    migration here" and the hint, and creates nothing.
# B. During a copy (the tool frozen with SIGSTOP while some tables are copied
#    and some chunks are pending, so nothing moves while we compare):
#    status --json says phase "data"; its rows done equal sum(rows_copied) of
#    the done chunks and, per table, the rows the target holds; a table is
#    "copied" exactly when all its chunks are done; percent, rate and ETA
#    are there.  After the copy: phase "done", 100%, every table copied with
#    all its rows; the text output lists the 20 biggest tables then
#    "... and N more"; events come errors first, at most 5.
# C. During start's follow phase under pgbench, with --source: phase
#    "follow", tables "replicating", the slot active with retained WAL, the
#    lag above 0 bytes under load, and
#    the lag reaches 0 bytes (and 0 s) once the load stops; without --source
#    the applied position is there and lag is null; --watch prints one JSON
#    document per interval until SIGINT (exit 0); after start stops, status
#    warns that the slot is not in use.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use RelocateTest;
use FollowTest;

my $db = 'app';
my $json = JSON::PP->new;

# Run status; returns the run_copy result.
sub status_run
{
	my ($tgt, %opts) = @_;
	return RelocateTest::run_copy(
		command => 'status',
		target  => $tgt->connstr($db),
		source  => $opts{source},
		args    => $opts{args} // []);
}

# status --json: the decoded document, or undef (with a diag).
sub status_json
{
	my ($tgt, %opts) = @_;
	my $r = status_run($tgt, %opts, args => [ '--json', @{ $opts{args} // [] } ]);
	my $doc = eval { $json->decode($r->{stdout}) };
	diag("status --json: exit $r->{exit}\nstdout:\n$r->{stdout}\nstderr:\n$r->{stderr}")
	  unless $r->{ok} && $doc;
	return $r->{ok} ? $doc : undef;
}

# Rows of a table on the target, or 'locked': a whole-table chunk holds its
# table's TRUNCATE lock until it commits, so a table the frozen tool is
# copying cannot be counted (and has no rows done).
sub table_rows
{
	my ($node, $name) = @_;
	my ($ret, $out, $err) =
	  $node->psql($db, "SET lock_timeout = '3s'; SELECT count(*) FROM ONLY $name");
	return 'locked' if $ret != 0 && $err =~ /lock timeout/;
	die "counting the rows of $name: $err" if $ret != 0;
	return $out;
}

# ---------------------------------------------------------------- A
{
	my ($src, $tgt) = RelocateTest::new_pair(name => 'status_none', dbname => $db);
	my $r = RelocateTest::copy_fails_like('status without state',
		[ qr/no migration here/, qr/pgrelocate copy or/ ],
		command => 'status', target => $tgt->connstr($db));
	is($r->{exit}, 1, 'status without state: exit status 1');
	is(RelocateTest::query($tgt, $db, "SELECT to_regnamespace('pgrelocate') IS NULL"),
		't', 'status without state created nothing on the target');
	$_->stop for ($src, $tgt);
}

# ---------------------------------------------------------------- B
my ($src, $tgt) = RelocateTest::new_pair(name => 'status_copy', dbname => $db);

# ledger: ~110 MB split in ~4 MB chunks; documents: 4 rows in one heap page
# and ~16 MB of TOAST, so one chunk bigger than any ledger chunk (copied
# first, while ledger goes on); accounts: a few chunks; 24 small tables.
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.ledger (id bigint PRIMARY KEY, account int NOT NULL, memo text);
INSERT INTO public.ledger
  SELECT i, i % 200000, CASE WHEN i % 3 = 0 THEN NULL ELSE md5(i::text) END
  FROM generate_series(1, 1500000) AS i;
CREATE TABLE public.documents (id int PRIMARY KEY, body text NOT NULL);
ALTER TABLE public.documents ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO public.documents
  SELECT d, string_agg(md5(d || '/' || k), '' ORDER BY k)
  FROM generate_series(1, 4) AS d, generate_series(1, 125000) AS k GROUP BY d;
CREATE TABLE public.accounts (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO public.accounts SELECT i, 'account ' || i FROM generate_series(1, 200000) AS i;
DO $$
BEGIN
  FOR i IN 1..24 LOOP
    EXECUTE format('CREATE TABLE public.small_%s (id int PRIMARY KEY)', i);
    EXECUTE format('INSERT INTO public.small_%s SELECT generate_series(1, %s)', i, i);
  END LOOP;
END $$;
SQL
my $ntables = 27;

my $copy = RelocateTest::start_copy(
	source => $src->connstr($db),
	target => $tgt->connstr($db),
	args   => [ '--jobs', '2', '--split-larger-than', '4MB' ]);
my $mixed = RelocateTest::wait_until($tgt, $db, <<'SQL', 't', 120);
SELECT EXISTS (SELECT 1 FROM pgrelocate.chunks GROUP BY table_no HAVING bool_and(state = 'done'))
   AND EXISTS (SELECT 1 FROM pgrelocate.chunks WHERE state = 'pending')
SQL
ok($mixed, 'copy: a table is copied and chunks are pending');
kill 'STOP', $copy->{pid};

my $doc = status_json($tgt);
ok($doc, 'status --json during the copy: exit 0 and valid JSON');
$doc //= {};
is($doc->{phase}, 'data', 'during the copy: phase "data"');
is($doc->{mode}, 'copy', 'during the copy: mode "copy"');
is($doc->{replication}, undef, 'a copy has no replication section');
my ($chunks, $done, $rows_done) = split /\x1f/, RelocateTest::query($tgt, $db, <<'SQL');
SELECT count(*), count(*) FILTER (WHERE state = 'done'),
       coalesce(sum(rows_copied) FILTER (WHERE state = 'done'), 0)
FROM pgrelocate.chunks
SQL
is($doc->{copy}{rows_done}, $rows_done, 'rows done = sum(rows_copied) of the done chunks');
is($doc->{copy}{chunks_done} . '/' . $doc->{copy}{chunks}, "$done/$chunks", 'chunks done / total');
cmp_ok($doc->{copy}{rows_done}, '>', 0, 'some rows are done');

my @tables = @{ $doc->{tables} // [] };
is(scalar @tables, $ntables, 'every table is listed');
my ($sum, $copied, $not_copied, $agree) = (0, 0, 0, 1);
for my $t (@tables)
{
	my $have = table_rows($tgt, $t->{name});
	$sum += $t->{rows_done};
	my $all_done = $t->{chunks} > 0 && $t->{chunks_done} == $t->{chunks};
	$copied++ if $t->{state} eq 'copied';
	$not_copied++ if $t->{state} ne 'copied';
	$have = 0 if $have eq 'locked' && $t->{chunks} == 1 && !$all_done;
	if ($have eq 'locked' || $have != $t->{rows_done} || ($t->{state} eq 'copied') != $all_done)
	{
		$agree = 0;
		diag("$t->{name}: $have rows on the target; status: $t->{state}, "
			  . "$t->{chunks_done}/$t->{chunks} chunks, $t->{rows_done} rows");
	}
}
ok($agree, 'per table: rows done = rows on the target; "copied" exactly when all chunks are done');
is($sum, $doc->{copy}{rows_done}, 'the tables add up to the total');
cmp_ok($copied, '>', 0, 'at least one table is "copied"');
cmp_ok($not_copied, '>', 0, 'at least one table is not copied yet');
ok($doc->{copy}{percent} > 0 && $doc->{copy}{percent} < 100,
	"percent between 0 and 100 ($doc->{copy}{percent})");
ok(defined $doc->{copy}{bytes_per_second} && $doc->{copy}{bytes_per_second} > 0,
	'a copy rate');
ok(defined $doc->{copy}{eta_seconds} && $doc->{copy}{eta_seconds} > 0, 'an ETA');

my $text = status_run($tgt);
ok($text->{ok}, 'text status during the copy: exit 0');
like($text->{stdout}, qr/phase data\b/, 'text: phase data');
# which table is done first depends on the workers' timing: the text names
# the one the JSON calls copied (a single-chunk one, 1/1, when there is one)
{
	my ($first) = sort { $a->{chunks} <=> $b->{chunks} } grep { $_->{state} eq 'copied' } @tables;
	$first //= { name => '(none copied)', chunks => 0 };
	like($text->{stdout}, qr/^\Q$first->{name}\E\s+copied\s+$first->{chunks}\/$first->{chunks}\b/m,
		"text: $first->{name} copied, all chunks");
}
like($text->{stdout}, qr/ETA \d+:\d\d/, 'text: an ETA');

kill 'CONT', $copy->{pid};
my $r = RelocateTest::finish_copy($copy);
ok($r->{ok}, 'the copy finished after SIGCONT') or diag($r->{stderr});

$doc = status_json($tgt) // {};
is($doc->{phase}, 'done', 'after the copy: phase "done"');
is($doc->{copy}{percent}, 100, 'after the copy: 100%');
is($doc->{copy}{tables_copied}, $ntables, 'after the copy: every table copied');
is($doc->{copy}{eta_seconds}, 0, 'after the copy: ETA 0');
cmp_ok($doc->{post_data}{entries_done}, '>=', 27, 'post-data entries (27+ primary keys) done');
my $all_rows = RelocateTest::query($tgt, $db, <<'SQL');
SELECT sum(n) FROM (
  SELECT (xpath('/row/n/text()',
          query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I', schemaname, tablename),
                       false, true, '')))[1]::text::bigint AS n
  FROM pg_tables WHERE schemaname = 'public') AS c
SQL
is($doc->{copy}{rows_done}, $all_rows, 'after the copy: rows done = every row on the target');
is(join(',', sort { $a cmp $b } map { $_->{state} } @{ $doc->{tables} }),
	join(',', ('copied') x $ntables), 'after the copy: every table "copied"');

# events: errors first, then the newest, at most 5
$tgt->safe_psql($db, <<'SQL');
INSERT INTO pgrelocate.events (at, level, context, message) VALUES
  (now() - interval '10 min', 'error', 'copy', 'old error'),
  (now() - interval '9 min', 'error', 'copy', 'newer error'),
  (now() - interval '8 min', 'info', 'copy', 'info 1'),
  (now() - interval '7 min', 'info', 'copy', 'info 2'),
  (now() - interval '6 min', 'info', 'copy', 'info 3'),
  (now() - interval '5 min', 'info', 'copy', 'info 4'),
  (now() - interval '4 min', 'info', 'copy', 'info 5');
SQL
$doc = status_json($tgt) // {};
is(join('|', map { $_->{message} } @{ $doc->{events} // [] }),
	'newer error|old error|info 5|info 4|info 3', 'events: errors first, then the newest, 5');

$text = status_run($tgt);
my @listed = $text->{stdout} =~ /^(public\.\S+)\s+copied\s/mg;
is(scalar @listed, 20, 'text: 20 tables listed');
is($listed[0], 'public.ledger', 'text: the biggest table first');
like($text->{stdout}, qr/^\.\.\. and 7 more$/m, 'text: "... and 7 more"');
like($text->{stdout}, qr/newer error/, 'text: the events');
$_->stop for ($src, $tgt);

# ---------------------------------------------------------------- C
($src, $tgt) = RelocateTest::new_pair(name => 'status_follow', dbname => $db);
FollowTest::setup_pgbench($src, $db, scale => 1);
my $load = FollowTest::load_start($src, $db);
ok(FollowTest::wait_for_load($src, $db, 100, 60), 'the load writes to the source');
my $run = FollowTest::start_bg($src, $tgt, $db, args => [ '--replica-identity-full' ]);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
my $name = FollowTest::migration($tgt, $db)->{replication_name};

$doc = status_json($tgt, source => $src->connstr($db)) // {};
is($doc->{phase}, 'follow', 'follow: phase "follow"');
is($doc->{mode}, 'start', 'follow: mode "start"');
is($doc->{replication_name}, $name, 'follow: the replication name');
is(join(',', sort { $a cmp $b } map { $_->{state} } @{ $doc->{tables} // [] }),
	join(',', ('replicating') x 6), 'follow: the six tables "replicating"');
my $rep = $doc->{replication} // {};
ok($rep->{source_checked}, 'follow: the source was read');
ok($rep->{slot}{exists} && $rep->{slot}{active}, 'follow: the slot exists and is active');
cmp_ok($rep->{slot}{retained_wal_bytes} // -1, '>', 0, 'follow: retained WAL on the source');
ok(defined $rep->{lag_bytes} && $rep->{lag_bytes} >= 0, 'follow: lag in bytes');
like($rep->{source_lsn} // '', qr{^[0-9A-F]+/[0-9A-F]+$}, 'follow: the source LSN');

my $behind = 0;
my $deadline = time + 60;
while (time < $deadline && !$behind)
{
	my $d = status_json($tgt, source => $src->connstr($db));
	$behind = 1 if $d && ($d->{replication}{lag_bytes} // 0) > 0;
}
ok($behind, 'under load, status shows the target behind the source (lag > 0 bytes)');

my $stats = FollowTest::load_stop($load);
my $zero;
$deadline = time + 120;
while (time < $deadline)
{
	$zero = status_json($tgt, source => $src->connstr($db));
	last if $zero && defined $zero->{replication}{lag_bytes} && $zero->{replication}{lag_bytes} == 0;
	Time::HiRes::usleep(200_000);
}
$zero //= {};
is($zero->{replication}{lag_bytes}, 0, 'after the load stopped the lag reaches 0 bytes');
is($zero->{replication}{lag_seconds}, 0, '... and 0 seconds');
is(FollowTest::counter_rows($tgt, $db), FollowTest::counter_rows($src, $db),
	'... and the target holds every counter row of the source');

$doc = status_json($tgt) // {};
like($doc->{replication}{applied_lsn} // '', qr{^[0-9A-F]+/[0-9A-F]+$},
	'without --source: the applied position');
ok(!$doc->{replication}{source_checked} && !defined $doc->{replication}{lag_bytes},
	'without --source: lag unknown (null)');
$text = status_run($tgt);
like($text->{stdout}, qr/give --source for lag/, 'text without --source says how to get the lag');
# (polled: WAL the source writes on its own, e.g. a running-xacts record,
# is behind until the next keepalive is confirmed)
$deadline = time + 30;
do { $text = status_run($tgt, source => $src->connstr($db)); }
  until $text->{stdout} =~ /lag 0 B/ || time > $deadline;
like($text->{stdout}, qr/lag 0 B \(0\.0 s\)/, 'text with --source: lag 0 B (0.0 s)');
like($text->{stdout}, qr/^slot\s+active, wal_status \w+, retained WAL on the source \d/m,
	'text with --source: the slot line');

# --watch: one compact document per interval until SIGINT
my $watch = RelocateTest::start_copy(
	command => 'status',
	target  => $tgt->connstr($db),
	args    => [ '--json', '--watch', '--interval', '200ms' ]);
my $lines = 0;
$deadline = time + 30;
while (time < $deadline && $lines < 3)
{
	eval { $watch->{h}->pump_nb; 1 };
	$lines = () = ${ $watch->{stdout} } =~ /\n/g;
	Time::HiRes::usleep(50_000);
}
cmp_ok($lines, '>=', 3, '--watch printed three reports');
kill 'INT', $watch->{pid};
$r = RelocateTest::finish_copy($watch);
is($r->{exit} . '/' . $r->{signal}, '0/0', '--watch ends with exit 0 on SIGINT');
my @docs = map { eval { $json->decode($_) } } split /\n/, $r->{stdout};
is(scalar(grep { ($_->{phase} // '') eq 'follow' } @docs), scalar(split /\n/, $r->{stdout}),
	'--watch: every line is a JSON document with phase "follow"');

# after start stops: the slot is kept, inactive, and status says so
$r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'start stopped with SIGINT') or diag($r->{stderr});
$doc = status_json($tgt, source => $src->connstr($db)) // {};
ok($doc->{replication}{slot}{exists} && !$doc->{replication}{slot}{active},
	'after the stop: the slot exists, inactive');
ok(scalar(grep { /is not in use/ } @{ $doc->{warnings} // [] }),
	'after the stop: a warning that the slot is not in use');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
RelocateTest::copy_fails_like('status after cleanup', [qr/no migration here/],
	command => 'status', target => $tgt->connstr($db));

done_testing();

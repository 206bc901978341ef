# Metrics and the event log of a running `start`.
#
# - GET /metrics on --metrics-listen returns valid Prometheus text format
#   (every sample line "name{labels} number", HELP and TYPE for each
#   series) with the expected series; apply counters grow while pgbench
#   writes to the source; the phase gauge says follow; other paths are 404;
#   a replayed schema change is counted.
# - A failure (a schema change that cannot be replayed exactly: a column
#   added with DEFAULT now()) stops start and is recorded in
#   pgrelocate.events with the error's own text.
use strict;
use warnings;

use HTTP::Tiny;
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, 'CREATE TABLE t (id int PRIMARY KEY, v text); '
	  . 'INSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g');

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $run = FollowTest::start_bg($src, $tgt, $db,
	args => [ '--metrics-listen', "127.0.0.1:$port" ]);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');

my $http = HTTP::Tiny->new(timeout => 10);
sub scrape
{
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	return $r->{success} ? $r->{content} : undef;
}
sub sample
{
	my ($text, $name) = @_;
	return $text =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

my $m1 = scrape();
ok(defined $m1, 'GET /metrics answers');
my @bad = grep { !/^#/ && !/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? -?[0-9.eE+-]+$/ }
  split /\n/, $m1;
is_deeply(\@bad, [], 'every sample line is valid Prometheus text format');
for my $s (qw(pgrelocate_copy_rows_total pgrelocate_apply_transactions_total
	pgrelocate_apply_rows_total pgrelocate_replication_lag_bytes
	pgrelocate_source_retained_wal_bytes pgrelocate_errors_total))
{
	like($m1, qr/^# TYPE \Q$s\E (counter|gauge)$/m, "$s has a TYPE line");
	ok(defined sample($m1, $s), "$s has a value");
}
is(sample($m1, 'pgrelocate_copy_rows_total'), 1000, 'copy_rows_total counts the copied rows');
like($m1, qr/^pgrelocate_phase\{phase="follow"\} 1$/m, 'the phase gauge says follow');
like($m1, qr/^pgrelocate_phase\{phase="data"\} 0$/m, 'and not data');

my $before = sample($m1, 'pgrelocate_apply_transactions_total');
$src->safe_psql($db, "INSERT INTO t VALUES ($_, 'new')") for 1001 .. 1020;
ok(RelocateTest::wait_until($tgt, $db, 'SELECT count(*) FROM t', '1020', 60), 'changes arrive');
my $ok = 0;
for (1 .. 50)
{
	my $m = scrape() // '';
	my $n = sample($m, 'pgrelocate_apply_transactions_total') // 0;
	if ($n >= $before + 20) { $ok = 1; last; }
	Time::HiRes::usleep(200_000);
}
ok($ok, 'apply_transactions_total grew by the 20 source transactions');
is(sample($m1, 'pgrelocate_apply_schema_changes_total'), 0, 'no schema change replayed yet');
$src->safe_psql($db, 'ALTER TABLE t ADD COLUMN extra int');
$src->safe_psql($db, "INSERT INTO t VALUES (1021, 'new', 7)");
ok(RelocateTest::wait_until($tgt, $db, 'SELECT extra FROM t WHERE id = 1021', '7', 60),
	'a schema change and a row using it arrive');
$ok = 0;
for (1 .. 50)
{
	if ((sample(scrape() // '', 'pgrelocate_apply_schema_changes_total') // 0) == 1) { $ok = 1; last; }
	Time::HiRes::usleep(200_000);
}
ok($ok, 'apply_schema_changes_total counts the replayed schema change');
is($http->get("http://127.0.0.1:$port/other")->{status}, 404, 'other paths: 404');

# a failure is recorded with its own message
# (a schema change that cannot be replayed exactly)
$src->safe_psql($db, 'ALTER TABLE t ADD COLUMN seen timestamptz DEFAULT now()');
my $r = FollowTest::finish($run);
isnt($r->{exit}, 0, 'start stops on a schema change it cannot replay exactly');
like($r->{stderr}, qr/schema change at \S+ refused: ALTER TABLE added a column whose default is computed/,
	'the error names the command');
like(RelocateTest::query($tgt, $db,
		"SELECT level || ': ' || message FROM pgrelocate.events ORDER BY id DESC LIMIT 1"),
	qr/^error: .*refused: ALTER TABLE added a column whose default is computed/,
	'the event log holds the error itself');
ok(!defined scrape(), 'the metrics listener is gone with the process');

FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
$src->stop;
$tgt->stop;
done_testing();

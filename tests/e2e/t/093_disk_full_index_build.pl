# The target's disk fills up outside the copy of a chunk (issue 15,
# src/WAITS.md): the rows fit, the index builds do not (rows and indexes
# together do once space is freed: about 25 MB).  The target database
# lives in a tablespace on a 40 MB tmpfs (as in 074: the target's
# postmaster in a user and mount namespace of its own).  start fails at the
# index build with the server's "No space left on device" and a hint that
# names the target's host and port and says that start resumes when run
# again; once space is freed, start run again resumes (the rows are not
# copied again) and reaches the follow phase with every row and index.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FaultTest;
use FollowTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.bulk (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO public.bulk SELECT i, repeat(md5(i::text), 2) FROM generate_series(1, 120000) i;
CREATE INDEX bulk_payload ON public.bulk (payload, id);
});
my $data_mb = RelocateTest::query($src, $db, q{SELECT ceil(pg_table_size('public.bulk') / 1048576.0)});
my $index_mb = RelocateTest::query($src, $db, q{SELECT ceil(pg_indexes_size('public.bulk') / 1048576.0)});
note("bulk: $data_mb MB of rows, $index_mb MB of indexes");

my (undef, $skip) = FaultTest::small_disk($tgt, $db, 40);
plan skip_all => "cannot start the target in a user and mount namespace: $skip" if $skip;
# room for the schema and the rows (and 3 MB), not for the indexes
FaultTest::fill_disk($tgt, ($data_mb + 3) * 1000);

my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'start', timeout => 180);
ok(!$r->{ok} && $r->{exit} > 0 && $r->{signal} == 0, 'start fails on the full disk (no signal, no timeout)')
  or diag($r->{stderr});
like($r->{stderr}, qr/\[indexes\] .*No space left on device/, 'the index build reports the full disk');
like($r->{stderr},
	qr/HINT:\s+Check free disk space\.\s+The disk of the target at host=\S+ port=${\ $tgt->port} is full: .*run again/s,
	'the hint names the target and says that start resumes when run again');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.bulk'), '120000', 'the rows were copied');
my $copied = RelocateTest::query($tgt, $db, q{SELECT count(*) FROM pgrelocate.chunks WHERE state = 'done'});
cmp_ok($copied, '>', 0, 'and recorded as copied');

$tgt->safe_psql('postgres', 'DROP DATABASE spare');    # frees the space
my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start run again reaches the follow phase')
  or diag(${ $run->{stderr} });
unlike(${ $run->{stderr} }, qr/\[copy public\.bulk/, 'the rows were not copied again');
is(RelocateTest::query($tgt, $db, q{SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'bulk'}),
	'bulk_payload,bulk_pkey', 'every index is built');
FollowTest::compare_tables($src, $tgt, $db);
my $s = FollowTest::stop_run($run, 'INT');
is($s->{exit}, 0, 'SIGINT: exit status 0') or diag($s->{stderr});
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
done_testing();

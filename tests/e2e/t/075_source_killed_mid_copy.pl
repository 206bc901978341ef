# The source stopped (SIGSTOP) in the middle of start's copy, then killed
# (SIGKILL of postmaster and backends) and started again (issue 15): the
# copy's connections break, start ends with the cause; run again, it keeps
# the slot (tables are synced at their own points: issue 16), copies the
# table that was not ready again under a new snapshot (not the schema),
# follows, and the target equals the source row
# by row.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FaultTest;
use FollowTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_conf => 'synchronous_commit = on');
$src->safe_psql($db, q{
CREATE TABLE public.bulk (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO public.bulk SELECT i, md5(i::text) FROM generate_series(1, 1500000) i;
CREATE TABLE public.small (id int PRIMARY KEY, v text);
INSERT INTO public.small SELECT i, 'v' || i FROM generate_series(1, 100) i;
});
FollowTest::create_marker($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db, args => [ '--jobs', '2' ]);
ok(FollowTest::poll($src, $db,
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'COPY %' AND application_name LIKE 'pgrelocate%'},
		120, $run),
	'the copy reads from the source');
FaultTest::freeze($src);
cmp_ok(RelocateTest::query($tgt, $db, q{SELECT count(*) FROM pgrelocate.chunks WHERE state = 'pending'}),
	'>', 0, 'the source is stopped mid-copy');
select undef, undef, undef, 2;
FaultTest::kill_and_restart($src);
my $r = FollowTest::finish($run);
is($r->{exit}, 1, 'start ends with exit status 1 once the source is gone') or diag($r->{stderr});
like($r->{stderr}, qr/server closed the connection|terminating connection|could not connect to the source/,
	'it says the connection to the source broke');
like($r->{stderr}, qr/error: start failed/, 'and that start failed');

$src->safe_psql($db, q{UPDATE public.small SET v = 'after the crash' WHERE id <= 10});
$run = FollowTest::start_bg($src, $tgt, $db, args => [ '--jobs', '2' ]);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'run again, start copies and follows');
$src->safe_psql($db, q{DELETE FROM public.small WHERE id > 90});
FollowTest::marker($src, $db);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the target caught up');
FollowTest::compare_tables($src, $tgt, $db);
$r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT: exit status 0');
like($r->{stderr}, qr/resuming at phase data/, 'the second run resumed the data phase');
like($r->{stderr}, qr/\[copy public\.bulk\] 1500000 rows/, 'it copied the unfinished table again, whole');
unlike($r->{stderr}, qr/recreating the replication slot/, 'under the same slot');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is(join(', ', FollowTest::leftovers($src, $tgt, $db)), '', 'nothing left behind');

done_testing();

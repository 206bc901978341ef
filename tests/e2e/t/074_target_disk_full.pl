# The target's disk fills up while start copies and while it follows (issue
# 15, RELIABILITY 33): the target database lives in a tablespace on a 40 MB
# tmpfs.  A
# mount needs privileges the test user lacks, so the target's postmaster
# runs in a user and mount namespace of its own (unshare: root there, the
# tmpfs mounted, then the test user again inside a nested namespace, since
# PostgreSQL refuses to run as root); WAL stays on the ordinary disk, as a
# full WAL disk would PANIC the server (a different fault).  Apply fails
# with "No space left on device", says so, commits nothing of the batch and
# confirms nothing past it; start keeps retrying; once space is freed it goes
# on, and every row arrives exactly once.
#
# During the copy: a filler database leaves about 4 MB free, the 13 MB table
# does not fit; its chunk fails with disk_full (53100), start says it waits
# for space and tries the chunk again with a backoff instead of exiting;
# once the filler is dropped, the copy goes through to the follow phase.
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
CREATE TABLE public.events (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO public.events SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 1000) i;
CREATE TABLE public.bulk (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO public.bulk SELECT i, repeat(md5(i::text), 2) FROM generate_series(1, 120000) i;
});
FollowTest::create_marker($src, $db);

# the target again, in its namespace, with a small tmpfs for the tablespace;
# 4 MB of reserve, then committed filler in 1 MB steps until the tablespace
# is full, then the reserve dropped: room for the schema and the small
# table, not for bulk
my (undef, $skip) = FaultTest::small_disk($tgt, $db, 40);
plan skip_all => "cannot start the target in a user and mount namespace: $skip" if $skip;
FaultTest::fill_disk($tgt, 4000);

my $run = FollowTest::start_bg($src, $tgt, $db);
my $copy_said = '';
for (1 .. 1200)
{
	last unless FollowTest::running($run);
	$copy_said = ${ $run->{stderr} };
	last if $copy_said =~ /the target's disk is full; trying the chunk again/;
	select undef, undef, undef, 0.1;
}
like($copy_said, qr/\[copy public\.bulk[^\]]*\] .*No space left on device/, 'the copy reports the full disk');
like($copy_said, qr/\[copy public\.bulk[^\]]*\] the target's disk is full; trying the chunk again in 1 s/,
	'and says it waits for space');
ok(FollowTest::running($run), 'start keeps running');
# the backoff doubles: 1 s, 2 s, 4 s; it must not give up
select undef, undef, undef, 4;
ok(FollowTest::running($run), 'start still runs after the retries');
like(${ $run->{stderr} }, qr/trying the chunk again in 2 s/, 'the wait grows');
is(RelocateTest::query($tgt, $db, 'SELECT phase FROM pgrelocate.migration'), 'data', 'start is in the data phase');
$tgt->safe_psql('postgres', 'DROP DATABASE spare');    # frees the space
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'once space is freed start reaches the follow phase')
  or BAIL_OUT('start did not reach follow: ' . ${ $run->{stderr} });
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.bulk'), '120000', 'every row of bulk is there');

# the filler again, for the full disk while start follows
$tgt->safe_psql('postgres', 'CREATE DATABASE spare TABLESPACE small');
$tgt->safe_psql('postgres', "ALTER DATABASE spare SET temp_tablespaces = 'pg_default'");
$tgt->safe_psql('spare', 'CREATE TABLE public.filler (b text)');

# fill the tmpfs: the pages of a failed insert stay allocated; fill again
# until even a small insert fails
my ($rc, $fout, $ferr, $probe_err) = (0, '', '', '');
for my $i (1 .. 10)
{
	($rc, $fout, $ferr) = $tgt->psql('spare',
		q{INSERT INTO public.filler SELECT repeat(md5(i::text), 30) FROM generate_series(1, 1000000) i});
	(undef, undef, $probe_err) = $tgt->psql('spare',
		q{INSERT INTO public.filler SELECT repeat(md5(i::text), 3) FROM generate_series(1, 2000) i});
	last if $probe_err =~ /No space left on device/;
}
like($probe_err, qr/No space left on device/, 'the tablespace is full');

my $seen = length ${ $run->{stderr} };
$src->safe_psql($db, q{
INSERT INTO public.events SELECT i, repeat(md5(i::text), 64) FROM generate_series(1001, 3000) i;
UPDATE public.events SET payload = 'changed ' || id WHERE id % 10 = 0;
DELETE FROM public.events WHERE id % 7 = 0;
});
FollowTest::marker($src, $db);
my $said = '';
for (1 .. 600)
{
	FollowTest::running($run);
	$said = substr(${ $run->{stderr} }, $seen);
	last if $said =~ /No space left on device/;
	select undef, undef, undef, 0.1;
}
like($said, qr/\[apply\] .*could not extend file .*No space left on device/, 'apply reports the full disk');
like($said, qr/HINT:\s+Check free disk space/, 'with the server\'s hint');
ok(FollowTest::running($run), 'start keeps running');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.events WHERE id > 1000'), '0',
	'nothing of the failed batch is on the target');
# start retries meanwhile; it must not give up
select undef, undef, undef, 3;
ok(FollowTest::running($run), 'start still runs after the retries');

$tgt->safe_psql('postgres', 'DROP DATABASE spare');    # frees the space
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'once space is freed the target catches up');
FollowTest::compare_tables($src, $tgt, $db);
my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'SIGINT: exit status 0') or diag($r->{stderr});
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);

done_testing();

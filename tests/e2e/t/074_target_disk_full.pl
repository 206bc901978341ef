# The target's disk fills up while start follows (issue 15, RELIABILITY
# 33): the target database lives in a tablespace on a 24 MB tmpfs.  A
# mount needs privileges the test user lacks, so the target's postmaster
# runs in a user and mount namespace of its own (unshare: root there, the
# tmpfs mounted, then the test user again inside a nested namespace, since
# PostgreSQL refuses to run as root); WAL stays on the ordinary disk, as a
# full WAL disk would PANIC the server (a different fault).  Apply fails
# with "No space left on device", says so, commits nothing of the batch and
# confirms nothing past it; start keeps retrying; once space is freed it goes
# on, and every row arrives exactly once.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FollowTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.events (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO public.events SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 1000) i;
});
FollowTest::create_marker($src, $db);

# the target again, in its namespace, with a small tmpfs for the tablespace
my $ts = PostgreSQL::Test::Utils::tempdir('small_ts');
$tgt->stop;
my ($uid, $gid) = ($<, (split ' ', $()[0]);
my $pgctl = join ' ', 'pg_ctl', '-D', $tgt->data_dir, '-l', $tgt->logfile, '-w', 'start';
my ($out, $err) = ('', '');
my $started = IPC::Run::run(
	[
		'unshare', '-Urm', 'sh', '-c',
		"mount -t tmpfs -o size=24m tmpfs '$ts' && exec unshare -U --map-user=$uid --map-group=$gid -- $pgctl"
	],
	'>', \$out, '2>', \$err);
plan skip_all => "cannot start the target in a user and mount namespace: $err" unless $started;
$tgt->_update_pid(1);
$tgt->safe_psql('postgres', "CREATE TABLESPACE small LOCATION '$ts'");
$tgt->safe_psql('postgres', "ALTER DATABASE $db SET TABLESPACE small");
$tgt->safe_psql('postgres', 'CREATE DATABASE spare TABLESPACE small');
# the filler's generate_series spills to a temporary file: not on the tmpfs,
# or the space it takes comes back when the failed insert ends
$tgt->safe_psql('postgres', "ALTER DATABASE spare SET temp_tablespaces = 'pg_default'");
$tgt->safe_psql('spare', 'CREATE TABLE public.filler (b text)');

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow: ' . ${ $run->{stderr} });

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

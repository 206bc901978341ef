# The source removes WAL the slot still needs (max_slot_wal_keep_size,
# RELIABILITY.md 34): the slot is invalidated, and the changes since are
# gone for good.  pgrelocate stops with "a full copy is required", applies
# nothing after the gap and does not reconnect for ever:
#   1. while start runs: its stream is cut and cannot come back (the
#      source refuses its TCP connections meanwhile) while the slot is
#      invalidated; once connections are allowed again, start stops;
#   2. start run again: refused at once; status shows the lost slot;
#      cleanup removes what is left.
# (Invalidating the slot of a stream that is connected but not reading
# cannot be tested: the source's checkpoint waits for the walsender to
# exit, and the walsender waits to send its last message to the consumer.)
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(
	dbname      => $db,
	source_tcp  => 1,    # the tool over TCP, the test over the Unix socket
	source_conf => "max_slot_wal_keep_size = '32MB'\nmax_wal_size = '64MB'\nmin_wal_size = '32MB'");
$src->safe_psql($db, q{
CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO public.items SELECT i, i FROM generate_series(1, 100) i;
CREATE TABLE public.filler (id bigserial PRIMARY KEY, pad text NOT NULL);
});
FollowTest::create_marker($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');
my $slot = RelocateTest::quote_literal(FollowTest::migration($tgt, $db)->{replication_name});

# 1. the stream is cut and cannot come back while the source writes far
# more than the slot may keep
my $hba = $src->data_dir . '/pg_hba.conf';
my $hba_before = slurp_file($hba);
open my $fh, '>', $hba or die "cannot write $hba: $!";
print $fh "host all all 127.0.0.1/32 reject\n$hba_before";
close $fh;
$src->reload;
$src->safe_psql($db, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $slot");
ok(FollowTest::poll($src, $db, "SELECT NOT active FROM pg_replication_slots WHERE slot_name = $slot", 30),
	'the stream is cut');
$src->safe_psql($db, 'UPDATE public.items SET v = -v WHERE id <= 10');
for (1 .. 6)
{
	$src->safe_psql($db, q{INSERT INTO public.filler (pad) SELECT repeat(md5(g::text), 30) FROM generate_series(1, 20000) g});
	$src->safe_psql($db, 'SELECT pg_switch_wal(); CHECKPOINT');
}
my $status = RelocateTest::query($src, $db, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $slot");
is($status, 'lost', 'the source invalidated the slot (wal_status lost)');
ok(FollowTest::running($run), 'start is still trying to reconnect');
open $fh, '>', $hba or die "cannot write $hba: $!";
print $fh $hba_before;
close $fh;
$src->reload;
my $r = FollowTest::finish($run);
is($r->{exit}, 1, 'once it can connect, start stops with exit status 1 instead of retrying');
like($r->{stderr}, qr/replication slot \S+ lost WAL it needed \(wal_status = lost\)/, 'it names the lost slot');
like($r->{stderr}, qr/full copy is required/, 'and says a full copy is required');

# 2. run again
my $st = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'status');
like($st->{stdout} . $st->{stderr}, qr/wal_status lost/, 'status shows the lost slot');

$r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'start');
is($r->{exit}, 1, 'start run again: exit status 1');
like($r->{stderr}, qr/lost WAL it needed \(wal_status = lost\)/, 'it names the lost slot');
like($r->{stderr}, qr/full copy is required/, 'it says a full copy is required');
like($r->{stderr}, qr/Run pgrelocate cleanup, recreate the target database/, 'and how to start over');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.items WHERE v < 0'), '0',
	'nothing after the gap was applied');

FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup removes what is left');

done_testing();

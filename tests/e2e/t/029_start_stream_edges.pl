# What the stream meets besides plain DML (RELIABILITY.md 17, 18, 20, 21, 31):
#   - a long stretch of writes to tables that are not published (only
#     empty transactions are skipped, nothing is sent): the slot's
#     confirmed_flush_lsn and restart_lsn still move past them, so the
#     source's WAL is not pinned, and the next real transaction arrives;
#   - logical messages, transactional and not, inside committed and
#     aborted transactions: no change to the data and no broken
#     transaction boundary;
#   - a transaction of 20,000 subtransactions, a third of them rolled back;
#   - two-phase commit on the source: a prepared transaction is applied
#     once, at COMMIT PREPARED; one rolled back is never applied;
#   - pgrelocate stopped (SIGSTOP) for longer than wal_sender_timeout:
#     the walsender gives up on it; after SIGCONT it reconnects and loses
#     nothing.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(
	dbname      => $db,
	source_tcp  => 1,
	source_conf => "max_prepared_transactions = 5\nwal_sender_timeout = '3s'");
$src->safe_psql($db, q{
CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO public.items SELECT i, i FROM generate_series(1, 100) i;
CREATE TABLE public.scratch (id bigserial PRIMARY KEY, pad text NOT NULL);
});
FollowTest::create_marker($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db,
	args => [ '--tables', 'public.items,public.follow_marker' ]);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');
is(RelocateTest::query($tgt, $db, q{SELECT to_regclass('public.scratch') IS NULL}), 't',
	'the table left out by --tables is not on the target');
# public.scratch stays on the source alone: compare what is migrated
my $rows_sql = q{SELECT count(*) || ' ' || coalesce(string_agg(id || ':' || v, ',' ORDER BY id), '') FROM public.items};
sub same_items
{
	my ($what) = @_;
	is(RelocateTest::query($tgt, $db, $rows_sql), RelocateTest::query($src, $db, $rows_sql),
		"public.items equals the source row by row ($what)");
}
my $slot = RelocateTest::quote_literal(FollowTest::migration($tgt, $db)->{replication_name});
my $slot_lsn = sub {
	my ($col) = @_;
	return "SELECT $col FROM pg_replication_slots WHERE slot_name = $slot";
};

# 1. writes to an unpublished table only: 200 transactions, about 20 MB of WAL
my $restart0 = RelocateTest::query($src, $db, $slot_lsn->('restart_lsn'));
$src->safe_psql($db,
	join('', map { "INSERT INTO public.scratch (pad) SELECT repeat('x', 500) FROM generate_series(1, 200);\n" } 1 .. 200));
my $x = RelocateTest::query($src, $db, 'SELECT pg_current_wal_insert_lsn()');
ok(FollowTest::poll($src, $db, "SELECT confirmed_flush_lsn >= '$x' FROM pg_replication_slots WHERE slot_name = $slot",
		60, $run),
	'the slot confirms past writes that send nothing (keepalives are acknowledged)');
# restart_lsn moves at a running-transactions record the slot has passed:
# a checkpoint writes one
my $moved = 0;
for (1 .. 30)
{
	$src->safe_psql($db, 'CHECKPOINT');
	$src->safe_psql($db, q{INSERT INTO public.scratch (pad) VALUES ('tick')});
	if (RelocateTest::query($src, $db, "SELECT restart_lsn >= '$x' FROM pg_replication_slots WHERE slot_name = $slot")
		eq 't')
	{
		$moved = 1;
		last;
	}
	sleep 1;
}
ok($moved, "the slot's restart_lsn moved past them: the source keeps no WAL for them "
	  . "(it was $restart0, the writes ended at $x)");
$src->safe_psql($db, 'UPDATE public.items SET v = v + 1000 WHERE id <= 10');
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the next real transaction arrives');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.items WHERE v > 1000'), '10',
	'and is applied');

# 2. logical messages
$src->safe_psql($db, $_) for (
	q{BEGIN; UPDATE public.items SET v = -1 WHERE id = 11; SELECT pg_logical_emit_message(true, 'app', 'in a transaction'); COMMIT},
	q{SELECT pg_logical_emit_message(false, 'app', 'outside any transaction')},
	q{SELECT pg_logical_emit_message(false, 'pgrelocate', 'an application using our prefix')},
	q{BEGIN; UPDATE public.items SET v = -2 WHERE id = 12; SELECT pg_logical_emit_message(true, 'app', 'aborted');
	  SELECT pg_logical_emit_message(false, 'app', 'sent though its transaction aborts'); ROLLBACK},
	q{BEGIN; SELECT pg_logical_emit_message(true, 'app', 'before'); UPDATE public.items SET v = -3 WHERE id = 13;
	  SAVEPOINT s; UPDATE public.items SET v = -4 WHERE id = 14; SELECT pg_logical_emit_message(true, 'app', 'in a savepoint');
	  ROLLBACK TO s; SELECT pg_logical_emit_message(true, 'app', 'after'); COMMIT});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'caught up after the logical messages');
is(RelocateTest::query($tgt, $db,
		q{SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM public.items WHERE id BETWEEN 11 AND 14}),
	'11:-1,12:12,13:-3,14:14', 'the committed changes around the messages applied, the aborted ones not');
same_items('logical messages');

# 2b. one transaction of 20,000 subtransactions, every third rolled back
# (an exception block each): only the rows of the committed ones arrive
$src->safe_psql($db, q{
DO $$
BEGIN
  FOR i IN 1 .. 20000 LOOP
    BEGIN
      INSERT INTO public.items VALUES (100000 + i, i);
      IF i % 3 = 0 THEN RAISE EXCEPTION 'roll back %', i; END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
  END LOOP;
END $$});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'caught up after 20,000 subtransactions');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) || \' \' || sum(v) FROM public.items WHERE id > 100000'),
	RelocateTest::query($src, $db, 'SELECT count(*) || \' \' || sum(v) FROM public.items WHERE id > 100000'),
	'the rows of the committed subtransactions, and none of the rolled back ones');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.items WHERE id > 100000 AND v % 3 = 0'), '0',
	'no row of a rolled back subtransaction');

# 3. two-phase commit on the source
$src->safe_psql($db, q{BEGIN; INSERT INTO public.items VALUES (1001, 1); UPDATE public.items SET v = 0 WHERE id = 1; PREPARE TRANSACTION 'p1'});
$src->safe_psql($db, q{BEGIN; INSERT INTO public.items VALUES (1002, 2); PREPARE TRANSACTION 'p2'});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'caught up with two transactions prepared');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.items WHERE id IN (1001, 1002) OR v = 0'), '0',
	'nothing of a prepared transaction is applied before it commits');
$src->safe_psql($db, q{ROLLBACK PREPARED 'p2'});
$src->safe_psql($db, q{COMMIT PREPARED 'p1'});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'caught up after COMMIT PREPARED');
is(RelocateTest::query($tgt, $db,
		q{SELECT string_agg(id::text, ',' ORDER BY id) FROM public.items WHERE id IN (1001, 1002) OR v = 0}),
	'1,1001', 'the committed prepared transaction is applied once, the rolled back one never');
same_items('two-phase commit');

# 4. pgrelocate stopped for longer than wal_sender_timeout, writes meanwhile
my $log_offset = -s $src->logfile;
kill 'STOP', $run->{pid};
$src->safe_psql($db, "UPDATE public.items SET v = v + 1 WHERE id = $_") for 20 .. 40;
my $gave_up = 0;
for (1 .. 40)
{
	if (slurp_file($src->logfile, $log_offset) =~ /terminating walsender process due to replication timeout/)
	{
		$gave_up = 1;
		last;
	}
	Time::HiRes::usleep(250_000);
}
kill 'CONT', $run->{pid};
ok($gave_up, 'the walsender gave up on the stopped pgrelocate (replication timeout)');
$src->safe_psql($db, 'UPDATE public.items SET v = v + 1 WHERE id BETWEEN 30 AND 50');
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run, flush => 1),
	'after SIGCONT pgrelocate reconnects and catches up');
same_items('after the stop');

my $r = FollowTest::stop_run($run, 'INT');
is($r->{exit}, 0, 'start stops on SIGINT with exit 0') or diag("stderr:\n$r->{stderr}");
like($r->{stderr}, qr/\[stream\].*(lost|closed|reconnect)/i, 'it said it lost the stream and reconnected');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup left nothing behind');

done_testing();

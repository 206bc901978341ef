# Creating the replication slot waits for every transaction running on the
# source, prepared ones included (RELIABILITY.md 3): start waits at most
# --slot-wait, names what it waits for, gives up cleanly (no slot, no
# publication, no session left on the source) and holds no lock on the
# application's tables meanwhile.  Once the prepared transaction ends, the
# same command goes through and the transaction's rows are on the target.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db, source_conf => 'max_prepared_transactions = 2');
$src->safe_psql($db, q{
CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO public.accounts SELECT i, 100 FROM generate_series(1, 10) i;
CREATE TABLE public.ledger (id int PRIMARY KEY, account int NOT NULL, amount int NOT NULL);
INSERT INTO public.ledger SELECT i, i, 1 FROM generate_series(1, 10) i;
});
FollowTest::create_marker($src, $db);
$src->safe_psql($db, q{BEGIN; INSERT INTO public.accounts VALUES (11, 5); PREPARE TRANSACTION 'pay''ment 7'});

my $run = FollowTest::start_bg($src, $tgt, $db, args => [ '--slot-wait', '6s' ]);
ok(FollowTest::poll($src, $db,
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'walsender' AND query LIKE 'CREATE_REPLICATION_SLOT%'},
		60, $run),
	'start is creating the slot');
# the application goes on: pgrelocate holds no lock on its tables while it
# waits (DDL on accounts would wait for the prepared transaction's own lock)
my ($rc, $out, $err) = $src->psql($db,
	q{SET lock_timeout = '1s'; UPDATE public.accounts SET balance = balance + 1 WHERE id = 1;
	  INSERT INTO public.ledger VALUES (11, 1, 1); ALTER TABLE public.ledger ADD COLUMN note text;
	  ALTER TABLE public.ledger DROP COLUMN note});
is($rc, 0, 'while start waits, updates and DDL on the application tables go through') or diag($err);

my $r = FollowTest::finish($run);
is($r->{exit}, 1, 'start gives up after --slot-wait with exit status 1');
like($r->{stderr}, qr/\[slot\] gave up creating the replication slot after 6 s/, 'it says it gave up, and after how long');
like($r->{stderr}, qr/waiting for prepared transaction 'pay''ment 7'/, 'it names the prepared transaction it waited for');
like($r->{stderr}, qr/End or commit the long-running or prepared transactions/, 'and says what to do');
is(RelocateTest::query($src, $db, q{SELECT count(*) FROM pg_replication_slots}), '0', 'no slot left on the source');
is(RelocateTest::query($src, $db, q{SELECT count(*) FROM pg_publication}), '0', 'no publication left on the source');
ok(FollowTest::wait_for_no_tool_sessions($src, 30), 'no pgrelocate session left on the source');
is(RelocateTest::query($src, $db, q{SELECT count(*) FROM pg_prepared_xacts}), '1',
	'the prepared transaction is untouched');

# the transaction commits: the same command goes through
$src->safe_psql($db, q{COMMIT PREPARED 'pay''ment 7'});
$run = FollowTest::start_bg($src, $tgt, $db, args => [ '--slot-wait', '6s' ]);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start then reaches the follow phase');
$src->safe_psql($db, 'UPDATE public.accounts SET balance = balance - 1 WHERE id = 11');
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the target caught up');
FollowTest::compare_tables($src, $tgt, $db);
is(RelocateTest::query($tgt, $db, 'SELECT balance FROM public.accounts WHERE id = 11'), '4',
	'the formerly prepared row was copied, and changed since');
is(FollowTest::stop_run($run)->{exit}, 0, 'start stops on SIGINT with exit 0');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'cleanup left nothing behind');

done_testing();

# The source database's own settings (ALTER DATABASE ... SET), which copy
# carries to the target (issue 13 item 8), must not reach pgrelocate's own
# sessions on either side: a database that defaults to read-only
# transactions, ends idle sessions after 1 s and statements after 300 ms
# (and locks after 1 ms) is copied, followed, verified and cleaned up
# exactly as any other; the target keeps every setting as the source has it.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.big (id int PRIMARY KEY, pad text NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO public.big SELECT i, repeat(md5(i::text), 8), 0 FROM generate_series(1, 150000) AS i;
CREATE TABLE public.small (id int PRIMARY KEY, v text);
INSERT INTO public.small SELECT i, 'v' || i FROM generate_series(1, 100) AS i;
SQL
FollowTest::create_marker($src, $db);
$src->safe_psql($db, <<'SQL');
ALTER DATABASE app SET default_transaction_read_only = on;
ALTER DATABASE app SET idle_session_timeout = '1s';
ALTER DATABASE app SET statement_timeout = '300ms';
ALTER DATABASE app SET lock_timeout = '1ms';
SQL
my $settings_sql = <<'SQL';
SELECT string_agg(s, ', ' ORDER BY s) FROM pg_db_role_setting d, unnest(d.setconfig) AS s
WHERE d.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) AND d.setrole = 0
SQL
# the test's own sessions opt out (the tool never sees PGOPTIONS: RelocateTest scrubs it)
$ENV{PGOPTIONS} = '-c default_transaction_read_only=off -c idle_session_timeout=0 '
  . '-c statement_timeout=0 -c lock_timeout=0';
my $src_settings = RelocateTest::query($src, $db, $settings_sql);
like($src_settings, qr/default_transaction_read_only=on/, 'the source database defaults to read-only');

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reached the follow phase');
is(RelocateTest::query($tgt, $db, $settings_sql), $src_settings, 'the target database has the source\'s settings');

# idle for longer than idle_session_timeout, then changes
sleep 3;
$src->safe_psql($db, <<'SQL');
UPDATE public.big SET n = n + 1 WHERE id % 100 = 0;
DELETE FROM public.small WHERE id <= 10;
INSERT INTO public.small SELECT i, 'w' || i FROM generate_series(101, 120) AS i;
SQL
ok(FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the changes were applied');
sleep 3;
$src->safe_psql($db, 'UPDATE public.small SET v = v || \'x\'');
ok(FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'and after another idle while');
ok(FollowTest::running($run), 'start is still following');
FollowTest::compare_tables($src, $tgt, $db);

RelocateTest::copy_ok('verify matches', FollowTest::conn($src, $tgt, $db), command => 'verify');
my $r = FollowTest::stop_run($run);
is($r->{exit}, 0, 'start stopped cleanly on SIGINT') or diag($r->{stderr});
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
is_deeply([ FollowTest::leftovers($src, $tgt, $db) ], [], 'nothing left behind');
is(RelocateTest::query($tgt, $db, $settings_sql), $src_settings, 'the target keeps the settings after cleanup');

done_testing();

# An apply error is not a dead end (issue 13 item 5): a unique index only
# the target has refuses a source insert, inside a source transaction that
# also updates another table and arrives among other transactions.
#   - start stops; the error names the table, the key (the server's
#     DETAIL), the source transaction (its xid and commit LSN, as the
#     source has them) and the way on (--skip-transaction LSN);
#   - a bad --skip-transaction value is refused before anything changes;
#   - start --skip-transaction LSN leaves out exactly that transaction:
#     later changes to every table keep streaming, the event log holds the
#     skip once, status lists it; verify names the rows the skip left
#     different; repaired by hand on the target, verify says MATCH.
use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.items (id int PRIMARY KEY, code text NOT NULL, note text);
INSERT INTO public.items SELECT i, 'c' || i, 'note ' || i FROM generate_series(1, 5) i;
CREATE TABLE public.other (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO public.other SELECT i, i FROM generate_series(1, 5) i;
CREATE TABLE public.xids (what text PRIMARY KEY, xid bigint NOT NULL);
});
FollowTest::create_marker($src, $db);
my %conn = FollowTest::conn($src, $tgt, $db);

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'caught up before the conflict');

$tgt->safe_psql($db, 'CREATE UNIQUE INDEX items_code_target_only ON public.items (code)');
# many source transactions in quick succession, so that inserts into
# items from more than one of them may share a multi-row statement (then
# apply runs them again one transaction at a time to name the one)
$src->safe_psql($db, join("\n",
	(map { "INSERT INTO public.items VALUES ($_, 'c$_', 'fine');" } 11 .. 40), q{
BEGIN;
INSERT INTO public.items VALUES (10, 'c1', 'duplicate on the target only');
UPDATE public.other SET v = 100 WHERE id = 1;
INSERT INTO public.xids SELECT 'bad', pg_current_xact_id()::text::bigint;
COMMIT;},
	(map { "INSERT INTO public.items VALUES ($_, 'c$_', 'fine');" } 41 .. 70)));
my $r = FollowTest::finish($run);
is($r->{exit}, 1, 'start stops on the refused insert');
my $xid = RelocateTest::query($src, $db, "SELECT xid FROM public.xids WHERE what = 'bad'");
like($r->{stderr}, qr/^pgrelocate: error: \[apply\] insert (into|of 1 row into) public\.items\b.*: duplicate key value violates unique constraint "items_code_target_only"$/m,
	'the error names the table and the constraint') or diag($r->{stderr});
like($r->{stderr}, qr/^DETAIL: +Key \(code\)=\(c1\) already exists\. The change comes from source transaction/m, 'the DETAIL names the key');
my ($lsn) = $r->{stderr} =~ /The change comes from source transaction $xid, committed at ([0-9A-F]+\/[0-9A-F]+)\./;
ok(defined $lsn, "the DETAIL names the source transaction ($xid) and its commit LSN") or diag($r->{stderr});
$lsn //= '0/0';
like($r->{stderr}, qr/^HINT: .*pgrelocate start --skip-transaction \Q$lsn\E and repair its rows on the target by hand/m,
	'the HINT names the way on');
note('one transaction at a time: ' . ($r->{stderr} =~ /applied again one transaction at a time/ ? 'yes' : 'not needed'));
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.items WHERE id >= 10'),
	RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.items WHERE id BETWEEN 11 AND 40'),
	'nothing at or after the refused transaction is on the target');

{
	my $bad = RelocateTest::run_copy(%conn, command => 'start', args => ['--skip-transaction', 'next']);
	is($bad->{exit}, 2, 'a bad --skip-transaction: exit 2');
	like($bad->{stderr}, qr/^pgrelocate: error: invalid value for --skip-transaction: "next"$/m,
		'a bad --skip-transaction: says so');
}

# the expert's way on: skip that one transaction
$run = FollowTest::start_bg($src, $tgt, $db, args => ['--skip-transaction', $lsn]);
$src->safe_psql($db, q{
UPDATE public.other SET v = v + 1000 WHERE id IN (2, 3);
INSERT INTO public.items VALUES (8, 'c8', 'after the skip');
});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'with the skip, start catches up');
ok(FollowTest::running($run), 'and keeps following');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) || \' \' || bool_and(id <> 10) FROM public.items'),
	'66 true', 'the transactions before and after the skipped one are applied');
is(RelocateTest::query($tgt, $db, 'SELECT string_agg(v::text, \',\' ORDER BY id) FROM public.other'),
	'1,1002,1003,4,5', 'other tables keep streaming; the skipped update is not applied');
is(RelocateTest::query($tgt, $db, q{SELECT string_agg(message, ' | ') FROM pgrelocate.events
	WHERE message LIKE 'skipped source transaction %'}),
	"skipped source transaction $xid committed at $lsn (3 changes not applied, by --skip-transaction)",
	'the event log holds the skip, once');
{
	my $s = RelocateTest::run_copy(target => $conn{target}, command => 'status');
	like($s->{stdout}, qr/^source transactions left out \(--skip-transaction; repair their rows by hand, verify names them\)\n\S+  skipped source transaction $xid committed at \Q$lsn\E /m,
		'status lists the skipped transaction') or diag($s->{stdout});
	$s = RelocateTest::run_copy(target => $conn{target}, command => 'status', args => ['--json']);
	my $j = eval { JSON::PP->new->decode($s->{stdout}) } // {};
	is(scalar @{ $j->{skipped_transactions} // [] }, 1, 'status --json: skipped_transactions');
}

# verify names the rows to repair
{
	my $v = RelocateTest::run_copy(%conn, command => 'verify', args => ['--json']);
	is($v->{exit}, 3, 'verify: the skipped rows differ') or diag($v->{stdout} . $v->{stderr});
	my $j = eval { JSON::PP->new->utf8->decode($v->{stdout}) } // {};
	is_deeply(
		[ sort map { "$_->{table} $_->{kind} " . JSON::PP->new->canonical->encode($_->{key}) } @{ $j->{row_differences} // [] } ],
		[ 'items missing {"id":"10"}', 'other changed {"id":"1"}', 'xids missing {"what":"bad"}' ],
		'verify names each row of the skipped transaction');
}
# repaired by hand: the target-only index was the mistake
$tgt->safe_psql($db, q{
DROP INDEX public.items_code_target_only;
INSERT INTO public.items VALUES (10, 'c1', 'duplicate on the target only');
UPDATE public.other SET v = 100 WHERE id = 1;
});
$tgt->safe_psql($db, "INSERT INTO public.xids VALUES ('bad', $xid)");
{
	my $v = RelocateTest::run_copy(%conn, command => 'verify');
	is($v->{exit}, 0, 'after the repair verify matches') or diag($v->{stdout} . $v->{stderr});
	like($v->{stdout}, qr/^result: MATCH$/m, 'result: MATCH');
}
is(FollowTest::stop_run($run)->{exit}, 0, 'start stops on SIGINT with exit 0');
# the same option again (a unit file that kept it): said, not silent
$run = FollowTest::start_bg($src, $tgt, $db, args => ['--skip-transaction', $lsn]);
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'start with the old skip follows');
{
	my $r = FollowTest::stop_run($run);
	is($r->{exit}, 0, 'and stops on SIGINT with exit 0');
	like($r->{stderr}, qr/^pgrelocate: warning: \[follow\] --skip-transaction \Q$lsn\E has nothing to leave out: the target has applied the source's changes up to [0-9A-F]+\/[0-9A-F]+, past that position$/m,
		'a skip behind what the target applied is named as such');
	unlike($r->{stderr}, qr/skipped source transaction/, 'and nothing is skipped twice');
}
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);

done_testing();

# A table without columns (all dropped, or made with none: the regression
# suite leaves several, e2e 096) is followed like any other: apply took
# one for a table missing on the target ("table ... does not exist on the
# target"), stopped without a message on a FULL-identity delete (no column
# to compare), and would have written "WHERE LIMIT 1".  Rows are inserted
# and deleted on the source; the target ends with the same count.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
$src->safe_psql($db, q{
CREATE TABLE public.no_columns ();
ALTER TABLE public.no_columns REPLICA IDENTITY FULL;
INSERT INTO public.no_columns SELECT FROM generate_series(1, 3);
CREATE TABLE public.all_dropped (a int, b text);
ALTER TABLE public.all_dropped REPLICA IDENTITY FULL;
INSERT INTO public.all_dropped VALUES (1, 'x'), (2, 'y');
ALTER TABLE public.all_dropped DROP COLUMN a, DROP COLUMN b;
});
FollowTest::create_marker($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start reached the follow phase');
$src->safe_psql($db, $_) for (
	"BEGIN; DELETE FROM public.no_columns WHERE ctid = '(0,1)'; INSERT INTO public.no_columns DEFAULT VALUES; "
	  . 'INSERT INTO public.no_columns DEFAULT VALUES; COMMIT',
	'INSERT INTO public.all_dropped DEFAULT VALUES',
	"DELETE FROM public.all_dropped WHERE ctid = '(0,1)'");
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the target caught up');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.no_columns'), '4',
	'no_columns: a row deleted and two inserted');
is(RelocateTest::query($tgt, $db, 'SELECT count(*) FROM public.all_dropped'), '2',
	'all_dropped: a row inserted and one deleted');
FollowTest::compare_tables($src, $tgt, $db);
my $r = FollowTest::stop_run($run);
is($r->{exit}, 0, 'start stopped by SIGINT with exit status 0');
unlike($r->{stderr}, qr/error:/, 'no error on the way');
done_testing();

# check under faults (issue 15, src/WAITS.md): the source is stopped
# (SIGSTOP) while check samples the copy rate (a COPY of the biggest table
# read for 2 s).  The sample's reads do not block past its 2 s, the cancel
# request a stopped postmaster never answers is given up after 2 s, and
# the COPY that does not end within 5 s is named with the source's host and
# port: check ends (its report without the estimate) instead of waiting for
# the source (before, the sample
# read with a blocking PQgetCopyData and waited for as long as the source
# was stopped).  After SIGCONT check runs through.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FaultTest;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);
# big enough that reading it takes longer than the sample's 2 s
$src->safe_psql($db, q{
CREATE TABLE public.big (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO public.big SELECT i, repeat(md5(i::text), 2) FROM generate_series(1, 800000) i;
});

END { FaultTest::thaw($src) if $src; }    # a failed assertion must not leave it stopped
my $c = RelocateTest::start_copy(source => $src->connstr($db), target => $tgt->connstr($db),
	command => 'check', timeout => 90);
ok(RelocateTest::wait_until($src, $db,
	q{SELECT count(*) > 0 FROM pg_stat_activity
	  WHERE application_name = 'pgrelocate check' AND query LIKE 'COPY (SELECT * FROM ONLY%'}, 't', 60),
	'check samples the copy rate') or diag(${ $c->{stderr} });
FaultTest::freeze($src);
my $t0 = time;
my $r = RelocateTest::finish_copy($c);
my $took = time - $t0;
FaultTest::thaw($src);
ok($r->{exit} >= 0 && $r->{signal} == 0, 'check ends by itself while the source is stopped (no signal, no harness timeout)')
  or diag($r->{stderr});
like($r->{stderr},
	qr/\[check\] timed out after 5 s waiting for the source to end the sample COPY \(host=\S+ port=${\ $src->port}\)/,
	'the message names the wait, the source, its host and port');
cmp_ok($took, '<', 30, sprintf('within the sample, the cancel and the wait for its end (%.1f s)', $took));

my $again = RelocateTest::run_copy(source => $src->connstr($db), target => $tgt->connstr($db),
	command => 'check', timeout => 90);
unlike($again->{stderr}, qr/timed out|sample COPY/, 'after SIGCONT check samples without a word about it')
  or diag($again->{stderr});
like($again->{stdout} . $again->{stderr}, qr/public\.big/, 'and reports on the table');
done_testing();

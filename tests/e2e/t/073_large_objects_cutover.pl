# Large objects through cutover and rollback (issue 15): logical decoding
# does not carry them, so start copies them once and the cutover brings
# over what changed since, before the pause and again inside it; rollback
# does the same the other way.  Created, rewritten (one of 3 MB, several
# pieces), unlinked, given a new owner and new privileges on the source
# while start follows, and on the target after the cutover: equal on both
# sides (oid, owner, privileges, contents) after the cutover and after the
# rollback.  verify names each differing large object before the cutover
# and matches after it.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use BouncerTest;
use FollowTest;
use RelocateTest;

my ($src, $tgt) = RelocateTest::new_pair();
$src->safe_psql('app', q{
CREATE TABLE public.docs (id int PRIMARY KEY, lo oid);
SELECT lo_from_bytea(1001, 'first');
SELECT lo_from_bytea(1002, 'second');
SELECT lo_from_bytea(1003, 'third');
SELECT lo_from_bytea(1004, 'fourth');
GRANT SELECT ON LARGE OBJECT 1004 TO app_reader;
INSERT INTO public.docs VALUES (1, 1001), (2, 1002), (3, 1003), (4, 1004);
});
FollowTest::create_marker($src, 'app');
my $b = BouncerTest->start($src, 'app');

# oid, owner, privileges (default made explicit) and md5 of the contents
my $list = q{SELECT m.oid, pg_get_userbyid(m.lomowner),
  (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(coalesce(m.lomacl, acldefault('L', m.lomowner))) a),
  md5(lo_get(m.oid)), length(lo_get(m.oid)) FROM pg_largeobject_metadata m ORDER BY 1};
sub same_large_objects
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($label, $expect_count) = @_;
	my $s = RelocateTest::query($src, 'app', $list);
	my $t = RelocateTest::query($tgt, 'app', $list);
	is($t, $s, "$label: the same large objects on both sides (oid, owner, privileges, contents)");
	is(scalar(split /\n/, $s), $expect_count, "$label: $expect_count large objects");
}

my $run = FollowTest::start_bg($src, $tgt, 'app');
ok(FollowTest::wait_for_phase($tgt, 'app', 'follow', 120), 'start reaches the follow phase')
  or BAIL_OUT('start did not reach follow: ' . ${ $run->{stderr} });
same_large_objects('after the copy', 4);

# changes on the source while start follows
$src->safe_psql('app', q{
SELECT lo_from_bytea(2001, 'created during start');
SELECT lo_from_bytea(2002, convert_to(repeat('0123456789abcdef', 196608), 'UTF8'));  -- 3 MB
SELECT lo_put(1001, 2, 'RST');
SELECT lo_unlink(1002);
ALTER LARGE OBJECT 1003 OWNER TO app_writer;
GRANT UPDATE ON LARGE OBJECT 1003 TO app_reader;
REVOKE SELECT ON LARGE OBJECT 1004 FROM app_reader;
INSERT INTO public.docs VALUES (5, 2001);
});
FollowTest::marker($src, 'app');
ok(defined FollowTest::wait_caught_up($src, $tgt, 'app', run => $run), 'the target caught up with the rows');
isnt(RelocateTest::query($tgt, 'app', $list), RelocateTest::query($src, 'app', $list),
	'the stream did not bring the large objects over');

my $v = RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'), command => 'verify');
is($v->{exit}, 3, 'verify before the cutover: DIFFERENT (exit 3)');
like($v->{stdout}, qr/large object 1001: contents differ/, 'verify names the rewritten large object');
like($v->{stdout}, qr/large object 1002: extra on target/, 'the unlinked one');
like($v->{stdout}, qr/large object 1003: owner differs/, 'the one with a new owner');
like($v->{stdout}, qr/large object 1004: privileges differ/, 'the one with fewer privileges');
like($v->{stdout}, qr/large object 2001: missing on target/, 'and the new one');

my @args = ($b->cutover_args('app'), '--max-pause', '5s');
my $cut = RelocateTest::copy_ok('cutover', FollowTest::conn($src, $tgt, 'app'),
	command => 'cutover', args => [@args]);
like($cut->{stderr}, qr/large objects on the target \(before the pause; again in it\): 2 created, 1 rewritten \(\d+ bytes\), 1 removed, 2 given their owner or privileges/,
	'the cutover says what it brought over before the pause');
same_large_objects('after the cutover', 5);
is(RelocateTest::query($tgt, 'app', 'SELECT length(lo_get(2002))'), '3145728', 'the 3 MB one whole');
is($b->show_database('app')->{port}, $tgt->port, 'pgbouncer points at the target');
$v = RelocateTest::run_copy(FollowTest::conn($src, $tgt, 'app'), command => 'verify');
is($v->{exit}, 0, 'verify after the cutover: MATCH') or diag($v->{stdout} . $v->{stderr});

# the application now writes to the target
$tgt->safe_psql('app', q{
SELECT lo_from_bytea(3001, 'created on the target');
SELECT lo_put(2001, 0, 'CHANGED');
SELECT lo_unlink(1001);
GRANT SELECT ON LARGE OBJECT 2002 TO PUBLIC;
});
my $rb = RelocateTest::copy_ok('rollback', FollowTest::conn($src, $tgt, 'app'),
	command => 'rollback', args => [@args]);
like($rb->{stderr}, qr/\[rollback\] large objects on the source \(before the pause; again in it\): 1 created, 1 rewritten/,
	'the rollback says what it brought back');
same_large_objects('after the rollback', 5);
is(RelocateTest::query($src, 'app', q{SELECT convert_from(lo_get(2001), 'UTF8')}), 'CHANGED during start',
	'the source holds what the target wrote');
is($b->show_database('app')->{port}, $src->port, 'pgbouncer points at the source again');

FollowTest::stop_run($run, 'INT');
FollowTest::cleanup_ok('cleanup', $src, $tgt, 'app');
$b->stop;
done_testing();

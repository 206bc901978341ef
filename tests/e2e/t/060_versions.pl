# pgrelocate across major versions, both ways: a source of one major to a
# target of another, through the whole migration and back.
#
# The pairs come from E2E_VERSIONS ("SOURCE-TARGET ...", e.g. "12-18";
# default "13-15 15-17", the smoke of make test), one after the other; other
# majors than Debian's 15 come from the cache of scripts/pg-versions.sh
# (`make test-versions` runs every pair, one run each).  For each pair:
#   - check passes and names both versions;
#   - start copies under a pgbench load through pgbouncer and follows; after
#     the load stops the target equals the source row by row, and the
#     counter holds every committed transaction exactly once;
#   - verify reports MATCH (exit 0), with no schema difference: a NOT NULL is
#     a NOT NULL however the version records it;
#   - status --source reads the source's slot and shows the lag reach 0;
#   - cutover under load moves the clients to the target with no failed
#     transaction; the reverse stream into the older (or newer) source runs,
#     and status shows that stream's lag reach 0;
#   - rollback brings the clients back; every transaction is on the source;
#   - cleanup leaves no slot, publication or replica identity change.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

use BouncerTest;
use FollowTest;
use RelocateTest;

sub run_pair
{
	my ($pair) = @_;
	my ($smaj, $tmaj) = $pair =~ /^(\d+)-(\d+)$/
	  or BAIL_OUT("E2E_VERSIONS must be SOURCE-TARGET (e.g. 13-15), not \"$pair\"");
	note("source $smaj, target $tmaj");
	my $t0 = Time::HiRes::time();

	my $db = 'app';
	my ($src, $tgt) = RelocateTest::new_pair(
		name         => "v${smaj}_$tmaj",
		dbname       => $db,
		source_major => $smaj,
		target_major => $tmaj);
	is(RelocateTest::query($src, $db, 'SELECT current_setting(\'server_version_num\')::int / 10000'),
		$smaj, "the source runs PostgreSQL $smaj");
	is(RelocateTest::query($tgt, $db, 'SELECT current_setting(\'server_version_num\')::int / 10000'),
		$tmaj, "the target runs PostgreSQL $tmaj");

	FollowTest::setup_pgbench($src, $db, scale => 2);
	my $identities_before = FollowTest::replica_identities($src, $db);

	my $check = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'check');
	is($check->{exit}, 0, 'check passes') or diag($check->{stdout} . $check->{stderr});

	my $b = BouncerTest->start($src, $db);
	my $load = $b->load_start($db, clients => 4);
	ok(FollowTest::wait_for_load($src, $db, 100, 60), 'the load through pgbouncer commits on the source');

	my $run = FollowTest::start_bg($src, $tgt, $db, args => [ '--replica-identity-full', '--jobs', 2 ]);
	if (!ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 180), 'start reaches the follow phase'))
	{
		diag("start did not reach follow ($pair): " . ${ $run->{stderr} });
		$b->load_stop($load);
		$b->stop;
		return;
	}
	my $at_follow = FollowTest::counter_rows($src, $db);
	ok(FollowTest::wait_for_load($src, $db, $at_follow + 300, 120), 'the load goes on during the follow');

	# status --source while following: the source's slot and the lag
	my $status = sub {
		my (%o) = @_;
		my $r = RelocateTest::run_copy(
			target => $tgt->connstr($db),
			($o{source} ? (source => $src->connstr($db)) : ()),
			command => 'status',
			args    => ['--json']);
		my $d = eval { JSON::PP->new->decode($r->{stdout}) };
		diag("status: exit $r->{exit}\n$r->{stdout}$r->{stderr}") unless $d && $r->{exit} == 0;
		return $d // {};
	};
	my $doc = $status->(source => 1);
	ok($doc->{replication}{source_checked}, 'status --source reads the source');
	ok($doc->{replication}{slot}{exists}, 'status --source: the slot exists');

	# Cutover under the load; then the application writes to the target.
	my @args = ($b->cutover_args($db), '--max-pause', '5s');
	my $cut = RelocateTest::copy_ok('cutover', FollowTest::conn($src, $tgt, $db),
		command => 'cutover', args => [@args]);
	is($b->show_database($db)->{port}, $tgt->port, 'pgbouncer points at the target');
	is(FollowTest::migration($tgt, $db)->{phase}, 'reverse', 'phase reverse');
	ok(FollowTest::wait_for_load($tgt, $db, FollowTest::counter_rows($tgt, $db) + 300, 120),
		'the load commits on the target after the cutover');
	my $on_target = FollowTest::counter_rows($tgt, $db);
	ok(FollowTest::wait_for_load($src, $db, $on_target, 120),
		"writes on the target ($tmaj) reach the source ($smaj): the reverse stream runs");
	my $stats = $b->load_stop($load);
	is($stats->{failed_runs} + $stats->{failed}, 0, 'no failed transaction through the cutover');

	# Reverse, caught up: status shows the reverse stream, lag 0.
	my $lag;
	my $deadline = time + 120;
	while (time < $deadline)
	{
		$doc = $status->(source => 1);
		$lag = $doc->{replication}{lag_bytes};
		last if defined $lag && $lag == 0;
		Time::HiRes::usleep(300_000);
	}
	is($lag, 0, 'phase reverse: status --source shows the reverse stream caught up (lag 0 bytes)');
	my $name = FollowTest::migration($tgt, $db)->{replication_name};
	is($doc->{replication}{direction}, 'reverse', 'phase reverse: status --json says direction "reverse"');
	is($doc->{replication}{stream}, "${name}_reverse", 'phase reverse: ... and names the reverse stream');
	ok($doc->{replication}{slot}{exists} && $doc->{replication}{slot}{active},
		'phase reverse: the reverse slot (on the target) exists and is active');
	my $text = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'status');
	like($text->{stdout},
		qr{^replication  reverse, target to source, ${name}_reverse: applied on the source [0-9A-F]+/[0-9A-F]+; target at [0-9A-F]+/[0-9A-F]+; lag 0 B \(0\.0 s\)$}m,
		'phase reverse: the text status shows the reverse stream, caught up');

	# verify at one point of the reverse stream: MATCH, no schema difference
	my $v = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify', args => [ '--json', '--jobs', 2 ]);
	my $vj = eval { JSON::PP->new->utf8->decode($v->{stdout}) } // {};
	is($v->{exit}, 0, 'verify: exit 0 (MATCH)') or diag($v->{stdout} . $v->{stderr});
	is($vj->{row_differences_total}, 0, 'verify: no row difference');
	is(join("\n", map { JSON::PP->new->canonical->encode($_) } @{ $vj->{schema_differences} // [] }),
		'', 'verify: no schema difference');

	my $rb = RelocateTest::copy_ok('rollback', FollowTest::conn($src, $tgt, $db),
		command => 'rollback', args => [@args]);
	is($b->show_database($db)->{port}, $src->port, 'rollback: pgbouncer points at the source again');
	is(FollowTest::counter_rows($src, $db), $stats->{processed},
		'source: one counter row per committed transaction (the rollback lost none)');
	ok(FollowTest::compare_tables($src, $tgt, $db), 'after the rollback the source equals the target');
	my $r = FollowTest::finish($run);
	ok($r->{ok}, 'start ends by itself after the rollback') or diag($r->{stderr});
	$doc = $status->(source => 1);
	is(join(',', map { $_ // 'null' } @{ $doc->{replication} // {} }{qw(direction lag_bytes applied_lsn)}),
		'null,null,null', 'rolled back: status --json shows no stream (direction, lag, applied null)');
	$text = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db), command => 'status');
	like($text->{stdout}, qr/^replication  \Q$name\E: no stream runs \(phase rolled-back\)$/m,
		'rolled back: the text status says no stream runs');

	FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);
	is(join(', ', FollowTest::leftovers($src, $tgt, $db)), '', 'cleanup leaves nothing behind');
	is(FollowTest::replica_identities($src, $db), $identities_before,
		'cleanup restored the replica identities of the source');
	$b->stop;
	diag(sprintf("pair %s: %.0f s", $pair, Time::HiRes::time() - $t0));
}

my @pairs = split ' ', $ENV{E2E_VERSIONS} // '13-15 15-17';
# The newest client programs go first on PATH before the first pair, not
# for the first pair with a major newer than 15: IPC::Run keeps the path it
# found for pg_dump the first time.
my ($newest) = sort { $b <=> $a } map { /(\d+)/g } @pairs;
RelocateTest::install_path($newest) if $newest;
for my $pair (@pairs)
{
	subtest "source and target $pair" => sub { run_pair($pair); };
}
done_testing();

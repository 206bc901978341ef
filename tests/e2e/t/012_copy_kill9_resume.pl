# kill -9 of pgrelocate copy in the middle of the data phase, then --resume.
#
# A. With the default --snapshot-grace, the resume continues from the same
#    snapshot: the target ends identical to the source, no row twice, every
#    chunk done; chunks finished before the kill are kept, not copied again;
#    at the kill the target holds exactly the rows of the chunks marked done
#    (a chunk's COPY and its "done" commit together); the source is left with
#    no session, held xmin or slot once the resumed run is over.
# B. With --snapshot-grace 0 the snapshot dies with the tool: --resume alone
#    refuses, says so, and changes nothing; --resume --new-snapshot finishes
#    the copy (the source did not change, so the result is identical).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my $db = 'app';
my ($src, $tgt) = RelocateTest::new_pair(dbname => $db);

# About 2 million rows in four tables, the biggest split in ~40 chunks.
# Keys and indexes come after the rows: loading is faster that way.
$src->safe_psql($db, <<'SQL');
CREATE TABLE public.accounts (
  id int NOT NULL, name text NOT NULL, balance numeric(14, 2) NOT NULL,
  opened timestamptz NOT NULL);
INSERT INTO public.accounts
  SELECT i, 'account ' || i, (i * 7919 % 1000000) / 100.0,
         timestamptz '2015-01-01 00:00:00+00' + i * interval '17 minutes'
  FROM generate_series(1, 200000) AS i;
CREATE TABLE public.ledger (
  id bigint NOT NULL, account_id int NOT NULL,
  amount numeric(12, 2) NOT NULL, memo text, at timestamptz NOT NULL);
INSERT INTO public.ledger
  SELECT i, 1 + i % 200000, ((i::bigint * 104729) % 2000000 - 1000000) / 100.0,
         CASE WHEN i % 3 = 0 THEN NULL ELSE md5(i::text) END,
         timestamptz '2020-01-01 00:00:00+00' + i * interval '1 second'
  FROM generate_series(1, 1500000) AS i;
-- No primary key, every row twice.
CREATE TABLE public.event_log (kind text NOT NULL, n int, payload jsonb);
INSERT INTO public.event_log
  SELECT 'kind' || (i % 5), i % 150000, jsonb_build_object('n', i % 150000)
  FROM generate_series(1, 300000) AS i;
-- TOASTed, incompressible documents.
CREATE TABLE public.documents (id int NOT NULL, body text NOT NULL);
INSERT INTO public.documents
  SELECT d, string_agg(md5(d || '/' || k), '' ORDER BY k)
  FROM generate_series(1, 3000) AS d, generate_series(1, 100) AS k GROUP BY d;
ALTER TABLE public.accounts ADD PRIMARY KEY (id);
ALTER TABLE public.ledger ADD PRIMARY KEY (id);
ALTER TABLE public.ledger ADD FOREIGN KEY (account_id) REFERENCES public.accounts;
CREATE INDEX ledger_account ON public.ledger (account_id);
ALTER TABLE public.documents ADD PRIMARY KEY (id);
CREATE SEQUENCE public.ticket_no;
SELECT setval('public.ticket_no', 31337);
SQL

my @with_pk = ('public.accounts', 'public.ledger', 'public.documents');
my @copy_args = ('--jobs', '2', '--split-larger-than', '4MB');
my %conn = (source => $src->connstr($db), target => $tgt->connstr($db));

my $MIXED_SQL = <<'SQL';
SELECT count(*) FILTER (WHERE state = 'done') > 0
   AND count(*) FILTER (WHERE state <> 'done') > 0
FROM pgrelocate.chunks
SQL
my $OPEN_XACTS_SQL = <<'SQL';
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
SQL
my $CHUNKS_DONE_SQL = <<'SQL';
SELECT table_no || '/' || chunk_no || ' ' || done_at
FROM pgrelocate.chunks WHERE state = 'done' ORDER BY table_no, chunk_no
SQL

# Start a copy, wait until some chunks are done and some are not, kill -9.
# Returns the killed run's result.
sub copy_and_kill
{
	my ($label, @extra) = @_;
	my $run = RelocateTest::start_copy(%conn, args => [ @copy_args, @extra ]);
	my $mixed = RelocateTest::wait_until($tgt, $db, $MIXED_SQL, 't', 120);
	ok($mixed, "$label: some chunks done and some not, while the copy runs");
	kill 'KILL', $run->{pid};
	my $r = RelocateTest::finish_copy($run);
	is($r->{signal}, 9, "$label: pgrelocate was killed by SIGKILL mid-copy")
	  or diag("exit $r->{exit}\nstderr:\n$r->{stderr}");
	# The target backends of the killed workers roll back and go away.
	ok(RelocateTest::wait_until($tgt, 'postgres', $OPEN_XACTS_SQL, '0', 60),
		"$label: no open transaction left on the target");
	return $r;
}

# Per table: rows on the target, and rows the done chunks say they copied.
sub rows_vs_done_chunks
{
	my %out;
	my $list = RelocateTest::query($tgt, $db, <<'SQL');
SELECT format('%I.%I', t.schema_name, t.table_name),
       coalesce(sum(c.rows_copied) FILTER (WHERE c.state = 'done'), 0)
FROM pgrelocate.tables AS t LEFT JOIN pgrelocate.chunks AS c USING (table_no)
GROUP BY 1 ORDER BY 1
SQL
	for my $line (split /\n/, $list)
	{
		my ($table, $done_rows) = split /\x1f/, $line;
		my $have = RelocateTest::query($tgt, $db, "SELECT count(*) FROM ONLY $table");
		$out{$table} = "$have rows on target, $done_rows in done chunks";
	}
	return \%out;
}

# Per table: how many rows each inserting transaction left (xmin).  A row
# copied again gets a new xmin.
sub rows_by_xmin
{
	my %out;
	for my $table (@with_pk, 'public.event_log')
	{
		$out{$table} = RelocateTest::query($tgt, $db,
			"SELECT xmin::text || ':' || count(*) FROM ONLY $table GROUP BY xmin ORDER BY 1");
	}
	return \%out;
}

sub assert_copy_complete
{
	my ($label) = @_;
	RelocateTest::compare_databases($src, $tgt, $db);
	for my $table (@with_pk)
	{
		is( RelocateTest::query($tgt, $db,
				"SELECT count(*) FROM (SELECT id FROM $table GROUP BY id HAVING count(*) > 1) AS d"),
			'0', "$label: no duplicate primary key in $table");
	}
	is(RelocateTest::query($tgt, $db,
		"SELECT count(*) FILTER (WHERE state <> 'done') || ' ' || (count(*) > 0) FROM pgrelocate.chunks"),
		'0 true', "$label: every chunk done");
	ok(RelocateTest::wait_for_no_sessions($src, 30),
		"$label: no session left on the source after the resumed run");
	is(RelocateTest::query($src, 'postgres', $RelocateTest::HELD_XMIN_SQL),
		'0', "$label: nothing holds back the source's xmin horizon");
	is(RelocateTest::query($src, 'postgres', 'SELECT count(*) FROM pg_replication_slots'),
		'0', "$label: no replication slot on the source");
}

# --- A. kill -9, then --resume from the same snapshot -------------------
{
	copy_and_kill('A');
	my $at_kill = rows_vs_done_chunks();
	my $consistent = 1;
	for my $table (sort keys %$at_kill)
	{
		my ($have, $done) = $at_kill->{$table} =~ /^(\d+) rows on target, (\d+) in done chunks$/;
		$consistent &&= defined $have && $have == $done;
	}
	ok($consistent, 'A: after the kill the target holds exactly the rows of the done chunks')
	  or diag(explain $at_kill);
	my $done_before = RelocateTest::query($tgt, $db, $CHUNKS_DONE_SQL);
	my $xmins_before = rows_by_xmin();

	my $r = RelocateTest::copy_ok('A: copy --resume', %conn, args => [ @copy_args, '--resume' ]);
	unlike($r->{stderr}, qr/new snapshot|newer point/i, 'A: the resume used the original snapshot');

	assert_copy_complete('A');
	my @kept = grep { $_ ne '' } split /\n/, $done_before;
	my %done_after = map { $_ => 1 } split /\n/, RelocateTest::query($tgt, $db, $CHUNKS_DONE_SQL);
	is_deeply([ grep { !$done_after{$_} } @kept ], [],
		'A: chunks done before the kill kept their done_at (not copied again)');
	my $xmins_after = rows_by_xmin();
	for my $table (sort keys %$xmins_before)
	{
		my %after = map { split /:/ } split /\n/, $xmins_after->{$table};
		my @lost = grep { my ($x, $n) = split /:/; ($after{$x} // 0) != $n }
		  split /\n/, $xmins_before->{$table};
		is_deeply(\@lost, [], "A: rows of $table copied before the kill are still the same rows");
	}
}

# --- B. no snapshot grace: --resume refuses, --new-snapshot finishes -----
{
	# B starts from a clean source: end what A left behind (A's assertions
	# above have reported it), and a fresh empty target database.
	$src->safe_psql('postgres', <<'SQL');
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
SQL
	ok(RelocateTest::wait_for_no_sessions($src, 30), 'B: source has no session at the start');
	$tgt->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)");
	$tgt->safe_psql('postgres', "CREATE DATABASE $db");
	copy_and_kill('B', '--snapshot-grace', '0');
	ok(RelocateTest::wait_for_no_sessions($src, 30),
		'B: with --snapshot-grace 0 nothing stays on the source after the kill');

	my $data_before   = RelocateTest::database_state($tgt, $db);
	my $chunks_before = RelocateTest::query($tgt, $db, $CHUNKS_DONE_SQL);
	RelocateTest::copy_fails_like(
		'B: copy --resume without the snapshot',
		[ qr/snapshot/i, qr/--new-snapshot|--restart/ ],
		%conn,
		args => [ @copy_args, '--resume' ]);
	is_deeply(RelocateTest::database_state($tgt, $db), $data_before,
		'B: the refused resume changed no table on the target');
	is(RelocateTest::query($tgt, $db, $CHUNKS_DONE_SQL), $chunks_before,
		'B: the refused resume changed no chunk state');

	RelocateTest::copy_ok('B: copy --resume --new-snapshot',
		%conn, args => [ @copy_args, '--resume', '--new-snapshot' ]);
	assert_copy_complete('B');
}

done_testing();

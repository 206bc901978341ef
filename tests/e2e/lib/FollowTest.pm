# Copyright: pgrelocate authors.  Helpers for the end-to-end tests of
# `pgrelocate start` (copy, then follow) and `pgrelocate cleanup`.

=pod

=head1 NAME

FollowTest - drive C<pgrelocate start> and C<cleanup>, put a pgbench load
with a unique per-transaction counter on the source, wait until the target
caught up, and compare both sides

=head1 SYNOPSIS

  use FollowTest;

  my ($src, $tgt) = RelocateTest::new_pair();
  FollowTest::setup_pgbench($src, 'app', scale => 2);
  my $load = FollowTest::load_start($src, 'app');
  my $run = FollowTest::start_bg($src, $tgt, 'app', args => ['--replica-identity-full']);
  FollowTest::wait_for_phase($tgt, 'app', 'follow');
  my $stats = FollowTest::load_stop($load);
  FollowTest::wait_caught_up($src, $tgt, 'app');
  FollowTest::compare_tables($src, $tgt, 'app');
  FollowTest::counter_exact($src, $tgt, 'app', $stats);

=head1 DESCRIPTION

Built on L<RelocateTest> (clusters, digests, tool wrappers).  Waiting is
always by polling.

Sequences are not compared while following: logical replication does not
carry them (the sequences phase copies them once, before the follow phase),
so after the copy the source's sequences move on and the target's do not.

=cut

package FollowTest;

use strict;
use warnings;

use Carp;
use File::Temp ();
use IPC::Run ();
use Test::More;
use Time::HiRes ();

use PostgreSQL::Test::Utils;
use RelocateTest;

# A run of start that follows until stopped must not be cut short by the
# harness's default timeout.
our $FOLLOW_TIMEOUT_S = 900;

=pod

=head1 RUNNING THE TOOL

=over

=item conn($src, $tgt, $db) => (source => ..., target => ...)

The connection arguments of the tool for database C<$db> on both nodes.

=item start_bg($src, $tgt, $db, %args) => $handle

C<pgrelocate start> in the background (RelocateTest::start_copy); C<args>
are extra arguments.

=item stop_run($handle, $signal) => $result

Send C<$signal> (default INT) and wait for the exit (RelocateTest::finish_copy).

=item finish($handle) => $result

Wait for the exit; the result is kept, so calling it again is harmless.

=item cleanup_ok($name, $src, $tgt, $db) / cleanup_run(...)

Run C<pgrelocate cleanup>; the first asserts exit status 0.

=cut

sub conn
{
	my ($src, $tgt, $db) = @_;
	my $source =
	  $src->{pgr_tcp}
	  ? 'host=127.0.0.1 port=' . $src->port . " dbname=$db"
	  : $src->connstr($db);
	return (source => $source, target => $tgt->connstr($db));
}

sub start_bg
{
	my ($src, $tgt, $db, %args) = @_;
	return RelocateTest::start_copy(
		conn($src, $tgt, $db),
		command => 'start',
		timeout => $FOLLOW_TIMEOUT_S,
		%args);
}

sub stop_run
{
	my ($h, $signal) = @_;
	kill($signal // 'INT', $h->{pid}) unless $h->{result};
	return finish($h);
}

# RelocateTest::finish_copy, once: the result is kept in the handle.
sub finish
{
	my ($h) = @_;
	$h->{result} //= RelocateTest::finish_copy($h);
	return $h->{result};
}

sub cleanup_run
{
	my ($src, $tgt, $db, %args) = @_;
	return RelocateTest::run_copy(conn($src, $tgt, $db), command => 'cleanup', %args);
}

sub cleanup_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, $src, $tgt, $db, %args) = @_;
	return RelocateTest::copy_ok($name, conn($src, $tgt, $db), command => 'cleanup', %args);
}

=pod

=back

=head1 STATE AND WAITING

=over

=item migration($tgt, $db) => { phase, replication_name } or undef

The row of pgrelocate.migration on the target, undef when there is none.

=cut

sub migration
{
	my ($tgt, $db) = @_;
	my $out = RelocateTest::query($tgt, $db, <<'SQL');
SELECT CASE WHEN to_regclass('pgrelocate.migration') IS NULL THEN '-' ELSE
  (SELECT phase || chr(31) || coalesce(replication_name, '') FROM pgrelocate.migration) END
SQL
	return undef if $out eq '-' || $out eq '';
	my ($phase, $name) = split /\x1f/, $out, -1;
	return { phase => $phase, replication_name => $name };
}

=pod

=item wait_for_phase($tgt, $db, $phase, $timeout_s) => $ok

Poll until pgrelocate.migration.phase on the target is C<$phase>.

=cut

sub wait_for_phase
{
	my ($tgt, $db, $phase, $timeout_s) = @_;
	return RelocateTest::wait_until($tgt, $db,
		"SELECT phase FROM pgrelocate.migration", $phase, $timeout_s);
}

=pod

=item origin_progress($tgt, $db, $name) => $lsn

pg_replication_origin_progress($name, true) on the target ('0/0' when the
origin does not exist or has no progress).

=cut

sub origin_progress
{
	my ($tgt, $db, $name) = @_;
	my $lit = RelocateTest::quote_literal($name);
	return RelocateTest::query($tgt, $db,
		"SELECT CASE WHEN pg_replication_origin_oid($lit) IS NULL THEN '0/0' "
		  . "ELSE coalesce(pg_replication_origin_progress($lit, true), '0/0')::text END");
}

=pod

=item wait_caught_up($src, $tgt, $db, %opts) => $lsn or undef

After the load stopped: take the source's WAL insert position (X; every
transaction committed so far has its commit record before it, even under the
test clusters' synchronous_commit = off, where pg_current_wal_lsn(), the
write position, can lag behind a visible commit), then
commit one marker transaction on a published table (public.follow_marker,
see create_marker; its commit ends after X, so the wait below ends even when
the last load transaction ended before X) and poll until the target's origin
progress is >= X.  Returns X, or undef on timeout (with a diag).  With
C<flush =E<gt> 1> also waits until the slot's confirmed_flush_lsn on the
source is >= X (pgrelocate acknowledged what it applied).  With
C<run =E<gt> $handle> gives up as soon as that run of start ended.

=cut

sub wait_caught_up
{
	my ($src, $tgt, $db, %opts) = @_;
	my $timeout = $opts{timeout} // 120;
	my $m = migration($tgt, $db) or do { diag('no pgrelocate.migration on the target'); return undef; };
	my $lit = RelocateTest::quote_literal($m->{replication_name});
	my $x = RelocateTest::query($src, $db, 'SELECT pg_current_wal_insert_lsn()');
	my $id = marker($src, $db);
	my $ok = poll($tgt, $db,
		"SELECT coalesce(pg_replication_origin_progress($lit, true) >= '$x', false)",
		$timeout, $opts{run});
	# and the marker row itself: progress past x can come from another
	# transaction committed after x (062 saw it), the marker's comes too
	$ok &&= poll($tgt, $db, "SELECT count(*) > 0 FROM public.follow_marker WHERE id = $id",
		$timeout, $opts{run});
	$ok &&= poll($src, $db,
		"SELECT confirmed_flush_lsn >= '$x' FROM pg_replication_slots WHERE slot_name = $lit",
		$timeout, $opts{run})
	  if $opts{flush};
	return $ok ? $x : undef;
}

=pod

=item poll($node, $db, $sql, $timeout_s, $run) => $ok

Poll C<$sql> until it returns 't', for at most C<$timeout_s> seconds; with
C<$run> (a start_bg handle) give up at once when that run ended, showing
its output.

=cut

sub poll
{
	my ($node, $db, $sql, $timeout_s, $run) = @_;
	my $deadline = time + $timeout_s;
	my $last = '';
	while (time <= $deadline)
	{
		$last = eval { RelocateTest::query($node, $db, $sql) } // "error: $@";
		return 1 if $last eq 't';
		if ($run && !running($run))
		{
			my $r = finish($run);
			diag("pgrelocate ended (exit $r->{exit}, signal $r->{signal}) while waiting for: "
				  . "$sql\nstderr:\n$r->{stderr}");
			return 0;
		}
		Time::HiRes::usleep(100_000);
	}
	diag("waited ${timeout_s}s for: $sql\nlast: $last");
	return 0;
}

=pod

=item running($handle) => $bool

Whether a start_bg run is still running (reads its output meanwhile): its
process exists and is not a zombie (Linux /proc; IPC::Run's pumpable()
stays true for a while after the process ended).

=cut

sub running
{
	my ($h) = @_;
	return 0 if $h->{result};
	eval { $h->{h}->pump_nb; 1 };    # read its output meanwhile
	# alive: /proc has it and it is not a zombie waiting to be reaped
	open my $fh, '<', "/proc/$h->{pid}/stat" or return 0;
	my $stat = <$fh> // '';
	close $fh;
	return $stat =~ /^\d+ \(.*\) [^Z]/s ? 1 : 0;
}

=pod

=item create_marker($node, $db) / marker($node, $db)

Create public.follow_marker (before the copy) / commit one more row in it.

=cut

sub create_marker
{
	my ($node, $db) = @_;
	$node->safe_psql($db,
		'CREATE TABLE public.follow_marker (id int PRIMARY KEY, at timestamptz NOT NULL)');
	return;
}

sub marker
{
	my ($node, $db) = @_;
	return $node->safe_psql($db,
		'INSERT INTO public.follow_marker SELECT coalesce(max(id), 0) + 1, clock_timestamp() '
		  . 'FROM public.follow_marker RETURNING id');
}

=pod

=back

=head1 LOAD

=over

=item setup_pgbench($node, $db, %opts)

pgbench -i (scale C<scale>, default 1; C<foreign_keys> adds pgbench's
foreign keys), the counter table public.txn_counter (n bigint PRIMARY KEY,
from the sequence public.txn_counter_n_seq, written once by every load
transaction) and the marker table.

=cut

sub setup_pgbench
{
	my ($node, $db, %opts) = @_;
	my $scale = $opts{scale} // 1;
	my @fk = $opts{foreign_keys} ? ('--foreign-keys') : ();
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[ 'pgbench', '-i', '-q', '-s', $scale, @fk, '-h', $node->host, '-p', $node->port, $db ],
		'>', \$out, '2>', \$err)
	  or croak "pgbench -i failed: $err";
	$node->safe_psql($db, <<'SQL');
CREATE SEQUENCE public.txn_counter_n_seq;
CREATE TABLE public.txn_counter (
  n bigint PRIMARY KEY,
  client int NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
SQL
	create_marker($node, $db);
	return;
}

# pgbench's built-in "TPC-B (sort of)" script, plus one counter row in the
# same transaction.
our $TPCB_COUNTER_SCRIPT = <<'EOS';
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO txn_counter (n, client) VALUES (nextval('txn_counter_n_seq'), :client_id);
END;
EOS

=pod

=item load_start($node, $db, %opts) => $load

Run pgbench (C<clients> 4, C<seconds> per run 2, C<scale> 1, C<script>
default $TPCB_COUNTER_SCRIPT) on the node in the background, over and over
until load_stop (so the load lasts as long as the test needs, whatever the
copy takes).  A run that fails (the server went away) is followed by the
next one, half a second later.

=item load_stop($load) => { runs, failed_runs, processed, output }

Stop after the run at hand and wait for it.  C<processed> sums pgbench's
"number of transactions actually processed" over the runs: transactions the
source acknowledged to pgbench.

=cut

# A test that dies must not leave its load loop running: END stops them.
our @loads;

END
{
	for my $l (@loads)
	{
		next unless kill(0, $l->{pid});
		if (open my $fh, '>', $l->{stop}) { close $fh; }
		kill('TERM', $l->{pid});
	}
}

sub load_start
{
	my ($node, $db, %opts) = @_;
	my $dir = File::Temp->newdir();
	my $script = "$dir/load.sql";
	open my $fh, '>', $script or croak "cannot write $script: $!";
	print $fh $opts{script} // $TPCB_COUNTER_SCRIPT;
	close $fh;
	my $stop = "$dir/stop";
	my $clients = $opts{clients} // 4;
	my $seconds = $opts{seconds} // 2;
	my $scale = $opts{scale} // 1;
	my $q = sub { my $s = shift; $s =~ s/'/'\\''/g; "'$s'" };
	my $cmd = join ' ',
	  'while [ ! -e', $q->($stop), ']; do',
	  'pgbench -n -c', $clients, '-j 2 -T', $seconds, '-s', $scale,
	  '-f', $q->($script), '-h', $q->($node->host), '-p', $node->port, $q->($db), '2>&1;',
	  'rc=$?; echo "pgbench exit status $rc";',
	  '[ $rc -eq 0 ] || sleep 0.5;',    # the server is away: do not spin
	  'done';
	my $out = '';
	my $h = IPC::Run::start([ 'bash', '-c', $cmd ], '<', \undef, '>', \$out, '2>&1');
	push @loads, { stop => $stop, pid => $h->{KIDS}[0]{PID} };
	return { h => $h, out => \$out, stop => $stop, dir => $dir, node => $node, db => $db };
}

sub load_stop
{
	my ($load) = @_;
	open my $fh, '>', $load->{stop} or croak "cannot create $load->{stop}: $!";
	close $fh;
	$load->{h}->finish;
	my $out = ${ $load->{out} };
	my %r = (runs => 0, failed_runs => 0, processed => 0, output => $out);
	$r{processed} += $1 while $out =~ /number of transactions actually processed: (\d+)/g;
	for my $rc ($out =~ /^pgbench exit status (\d+)$/mg)
	{
		$r{runs}++;
		$r{failed_runs}++ if $rc != 0;
	}
	note("load: $r{runs} pgbench runs ($r{failed_runs} failed), $r{processed} transactions");
	return \%r;
}

=pod

=item wait_for_load($node, $db, $rows, $timeout_s) => $ok

Poll until public.txn_counter on C<$node> holds at least C<$rows> rows.

=cut

sub counter_rows
{
	my ($node, $db) = @_;
	return RelocateTest::query($node, $db, 'SELECT count(*) FROM public.txn_counter');
}

sub wait_for_load
{
	my ($node, $db, $rows, $timeout_s) = @_;
	return RelocateTest::wait_until($node, $db,
		"SELECT count(*) >= $rows FROM public.txn_counter", 't', $timeout_s);
}

=pod

=back

=head1 COMPARISON

=over

=item compare_tables($src, $tgt, $db) => $ok

Like RelocateTest::compare_databases (same tables; per table row count and
rows, with the differing rows printed; large objects; schema dump), except
sequences, which following does not carry (see DESCRIPTION), and the lines
of the schema dump about pgrelocate's own publication (pgrelocate_XXXXXXXX)
and about the REPLICA IDENTITY FULL it gave key-less tables on the source
(pgrelocate.replica_identity on the target): both exist on the source only
while migrating.  After cleanup the comparison is strict again (and
leftovers() checks that nothing is left anywhere).

=cut

sub compare_tables
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($src, $tgt, $db) = @_;
	my ($s, $t) = RelocateTest::database_states([ $src, $db ], [ $tgt, $db ]);
	my $ok = 1;
	# The tool's own publication belongs to the source alone (so do its
	# schema-change capture triggers), and so does
	# the REPLICA IDENTITY FULL it gives key-less tables while migrating
	# (listed on the target until cleanup; the target keeps the original).
	my %changed;
	if (RelocateTest::query($tgt, $db, "SELECT to_regclass('pgrelocate.replica_identity') IS NOT NULL") eq 't')
	{
		$changed{$_} = 1 for grep { $_ ne '' } split /\n/,
		  RelocateTest::query($tgt, $db, 'SELECT qualified_name FROM pgrelocate.replica_identity');
	}
	for my $state ($s, $t)
	{
		$state->{schema} = [
			grep {
				!/PUBLICATION pgrelocate_[0-9a-f]{8}(_reverse)?\b/
				  && !/\bpgrelocate_[0-9a-f]{8}(_reverse)?_ddl/
				  && !(/^ALTER TABLE ONLY (.*) REPLICA IDENTITY FULL;$/ && $changed{$1})
			} @{ $state->{schema} } ];
	}

	$ok &= is_deeply([ sort keys %{ $t->{tables} } ],
		[ sort keys %{ $s->{tables} } ], 'same tables and materialized views');
	for my $name (sort keys %{ $s->{tables} })
	{
		my $want = $s->{tables}{$name};
		my $got = $t->{tables}{$name} // { rows => '(missing)', digest => '' };
		$ok &= is($got->{rows}, $want->{rows}, "row count of $name");
		my $same = is($got->{digest}, $want->{digest}, "rows of $name");
		diag(RelocateTest::row_differences($src, $db, $tgt, $db, $want->{sql}))
		  if !$same && $got->{rows} ne '(missing)';
		$ok &= $same;
	}
	$ok &= is_deeply($t->{large_objects}, $s->{large_objects},
		'large objects: oid, owner, acl, comment, size, md5');
	my $same_schema = is_deeply($t->{schema}, $s->{schema}, 'schema (pg_dump --schema-only)');
	diag(RelocateTest::lines_diff($s->{schema}, $t->{schema})) unless $same_schema;
	$ok &= $same_schema;
	return $ok;
}

=pod

=item counter_exact($src, $tgt, $db, $load_stats) => $ok

The counter proves exactly-once: no value twice on the target, no value of
the source missing on the target and none extra (listed when they differ),
and at least as many rows as pgbench saw acknowledged (C<$load_stats> from
load_stop, a sum over several loads allowed as a number).

=cut

sub counter_exact
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($src, $tgt, $db, $acked) = @_;
	$acked = $acked->{processed} if ref $acked;
	my $values = sub {
		my %c;
		$c{$_}++ for split /\n/, RelocateTest::query(shift, $db, 'SELECT n FROM public.txn_counter');
		return \%c;
	};
	my ($s, $t) = ($values->($src), $values->($tgt));
	my @dup = sort { $a <=> $b } grep { $t->{$_} > 1 } keys %$t;
	my @missing = sort { $a <=> $b } grep { !$t->{$_} } keys %$s;
	my @extra = sort { $a <=> $b } grep { !$s->{$_} } keys %$t;
	my $cut = sub { my @l = @_; splice @l, 20 if @l > 20; join(', ', @l) . (@_ > 20 ? ', ...' : '') };
	my $ok = 1;
	$ok &= is(scalar @dup, 0, 'counter: no transaction applied twice on the target')
	  or diag('counter values more than once on the target: ' . $cut->(@dup));
	$ok &= is(scalar @missing, 0, 'counter: no source transaction missing on the target')
	  or diag('counter values missing on the target: ' . $cut->(@missing));
	$ok &= is(scalar @extra, 0, 'counter: nothing on the target the source does not have')
	  or diag('counter values only on the target: ' . $cut->(@extra));
	if (defined $acked)
	{
		$ok &= cmp_ok(scalar keys %$t, '>=', $acked,
			'counter: every transaction pgbench saw committed is on the target');
		$ok &= cmp_ok($acked, '>', 0, 'counter: the load committed transactions');
	}
	return $ok;
}

=pod

=item leftovers($src, $tgt, $db) => @what

What a migration may leave behind, as strings: replication slots and
publications on the source; publications, replication origins and the
pgrelocate schema on the target.  Empty after a complete cleanup.

=item wait_for_no_tool_sessions($node, $timeout_s) => $ok

Poll until no session of pgrelocate (application_name pgrelocate...) is
left on the node; a backend ends shortly after its client.

=cut

sub leftovers
{
	my ($src, $tgt, $db) = @_;
	my @l;
	push @l, map { "source: $_" } grep { $_ ne '' } split /\n/, RelocateTest::query($src, $db, <<'SQL');
SELECT 'slot ' || slot_name FROM pg_replication_slots
UNION ALL SELECT 'publication ' || pubname FROM pg_publication
UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger
UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgrelocate'
UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'pgrelocate'
SQL
	push @l, map { "target: $_" } grep { $_ ne '' } split /\n/, RelocateTest::query($tgt, $db, <<'SQL');
SELECT 'origin ' || roname FROM pg_replication_origin
UNION ALL SELECT 'publication ' || pubname FROM pg_publication
UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger
UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'pgrelocate'
SQL
	return @l;
}

sub wait_for_no_tool_sessions
{
	my ($node, $timeout_s) = @_;
	my $ok = RelocateTest::wait_until($node, 'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgrelocate%'",
		'0', $timeout_s // 30);
	# which ones, for the failure report
	diag("left on the server:\n" . RelocateTest::query($node, 'postgres',
			"SELECT string_agg(format('pid %s %s (%s) %s since %s, xmin %s: %s', pid, "
			  . "application_name, backend_type, state, backend_start, backend_xmin, "
			  . "left(query, 120)), E'\\n') FROM pg_stat_activity WHERE application_name LIKE 'pgrelocate%'"))
	  unless $ok;
	return $ok;
}

=pod

=item replica_identities($node, $db) => $text

"schema.table relreplident" of every user table, one a line.

=cut

sub replica_identities
{
	my ($node, $db) = @_;
	return RelocateTest::query($node, $db, <<'SQL');
SELECT format('%I.%I', n.nspname, c.relname) || ' ' || c.relreplident::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrelocate')
  AND n.nspname !~ '^pg_'
ORDER BY 1
SQL
}

=pod

=back

=cut

1;

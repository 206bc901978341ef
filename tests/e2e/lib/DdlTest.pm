# Copyright: pgrelocate authors.  Helpers for the end-to-end tests of
# schema changes captured on one side and replayed on the other (issue 17).

=pod

=head1 NAME

DdlTest - an application-style schema migration, stage by stage, run on
the side clients write to while pgrelocate follows, with a load that
writes every table a stage changes

=head1 SYNOPSIS

  use DdlTest;

  DdlTest::setup($src, 'app');                  # after FollowTest::setup_pgbench
  my $load = FollowTest::load_start($src, 'app', script => $DdlTest::LOAD_SCRIPT);
  DdlTest::run_stages(up => $src, down => $tgt, db => 'app',
      caught_up => sub { ... }, verify => sub { my ($what) = @_; ... });

=head1 DESCRIPTION

The stages (each a list of query strings sent as one simple query, as
C<psql -c> sends them): attach a partition; detach one (its later rows
must follow); a column backfilled in batches; DDL and DML in one string,
and a table created and filled in a string with BEGIN ... COMMIT; a
rename of a column the load writes (its INSERT is positional); ALTER TYPE
... ADD VALUE and rows with the new value; DROP COLUMN; a foreign key NOT
VALID, then VALIDATE.  After each stage: caught_up, then the checks of the
stage on the downstream side, then verify.

=cut

package DdlTest;

use strict;
use warnings;

use Carp;
use IPC::Run ();
use JSON::PP ();
use Test::More;

use FollowTest;
use RelocateTest;

sub setup
{
	my ($node, $db) = @_;
	$node->safe_psql($db, <<'SQL');
CREATE TYPE public.mood AS ENUM ('ok', 'sad');
CREATE TABLE public.orders (id bigserial PRIMARY KEY, qty int, mood public.mood);
INSERT INTO public.orders (qty, mood) SELECT g, 'ok' FROM generate_series(1, 100) g;
CREATE TABLE public.readings (id int, k int, v int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE public.readings_a PARTITION OF public.readings FOR VALUES FROM (1) TO (101);
CREATE TABLE public.readings_b (id int, k int, v int, PRIMARY KEY (id, k));
INSERT INTO public.readings SELECT g, g % 100 + 1, 0 FROM generate_series(1, 1000) g;
INSERT INTO public.readings_b SELECT g, g % 100 + 101, 0 FROM generate_series(1001, 2000) g;
SQL
	return;
}

# The load writes every table a stage changes; its INSERT into orders is
# positional, so it goes on writing qty after the rename.
our $LOAD_SCRIPT = <<'EOS';
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
\set k random(1, 200)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO public.orders VALUES (nextval('public.orders_id_seq'), :delta, 'ok');
UPDATE public.readings SET v = v + 1 WHERE k = :k;
UPDATE public.readings_a SET v = v + 1 WHERE k = :k;
UPDATE public.readings_b SET v = v + 1 WHERE k = :k;
INSERT INTO txn_counter (n, client) VALUES (nextval('txn_counter_n_seq'), :client_id);
END;
EOS

=pod

=over

=item run_sql($node, $db, $sql)

Send C<$sql> as one simple query (psql -c), as an application or a
migration tool sends it; a deadlock with the load is retried; any other
error dies.

=cut

sub run_sql
{
	my ($node, $db, $sql) = @_;
	for my $attempt (1 .. 10)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p',
				$node->port, '-d', $db, '-c', $sql ], '>', \$out, '2>', \$err);
		return if $? == 0;
		croak "psql failed: $err ($sql)" unless $err =~ /deadlock detected/ && $attempt < 10;
		note("deadlock with the load, again: $sql");
	}
}

=pod

=item verify_match($src, $tgt, $db, $what)

C<pgrelocate verify --json> (in either direction: it follows the phase)
exits 0 and finds no row and no schema difference.

=cut

sub verify_match
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($src, $tgt, $db, $what) = @_;
	my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify', args => [ '--json', '--jobs', 2 ]);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) } // {};
	is($r->{exit}, 0, "$what: verify exits 0")
	  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
	is($j->{row_differences_total}, 0, "$what: verify finds no row difference");
	is($j->{schema_differences_total}, 0, "$what: verify finds no schema difference");
	return;
}

=pod

=item run_stages(up => $node, down => $node, db => $db, caught_up => $sub, verify => $sub)

Run every stage on C<up>; after each, C<caught_up> (returns true when
C<down> has everything C<up> committed), the stage's checks on C<down>,
then C<verify>(C<$what>).

=back

=cut

sub run_stages
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my (%a) = @_;
	my @stages = (
		[ 'attach a partition',
			[ 'ALTER TABLE public.readings ATTACH PARTITION public.readings_b '
				  . 'FOR VALUES FROM (101) TO (201)',
				'UPDATE public.readings SET v = v + 1000 WHERE k > 190' ],
			[] ],
		[ 'detach a partition',
			[ 'ALTER TABLE public.readings DETACH PARTITION public.readings_a',
				'UPDATE public.readings_a SET v = -v WHERE k <= 10',
				'INSERT INTO public.readings_a VALUES (5001, 7, 0)' ],
			[ [ 'SELECT count(*) FROM public.readings_a WHERE id = 5001', '1',
				'a row inserted into the detached partition followed' ] ] ],
		[ 'a column backfilled in batches',
			[ 'ALTER TABLE public.pgbench_accounts ADD COLUMN score int',
				map { my $lo = $_ * 10000 + 1;
					'UPDATE public.pgbench_accounts SET score = aid % 97 '
					  . "WHERE aid BETWEEN $lo AND " . ($lo + 9999) } 0 .. 9 ],
			[ [ 'SELECT count(score) FROM public.pgbench_accounts', '100000',
				'every batch of the backfill followed' ] ] ],
		[ 'DDL and DML in one query string',
			[ 'ALTER TABLE public.orders ADD COLUMN memo text; '
				  . "INSERT INTO public.orders (qty, mood, memo) VALUES (1, 'ok', 'multi'); "
				  . "UPDATE public.orders SET memo = 'm' || id WHERE id <= 50; "
				  . 'CREATE INDEX orders_memo_idx ON public.orders (memo)',
				'BEGIN; CREATE TABLE public.audit (id int PRIMARY KEY, what text); '
				  . "INSERT INTO public.audit SELECT g, 'a' || g FROM generate_series(1, 50) g; "
				  . "COMMIT; INSERT INTO public.audit VALUES (51, 'later')" ],
			[ [ "SELECT count(*) FROM public.orders WHERE memo = 'multi'", '1',
				'the INSERT of the string ran once' ],
			  [ 'SELECT count(*) FROM public.audit', '51',
				'the table created in the string has its rows from the first insert' ] ] ],
		[ 'a column the load writes renamed',
			[ 'ALTER TABLE public.orders RENAME COLUMN qty TO quantity' ], [] ],
		[ 'ALTER TYPE ... ADD VALUE, then the new value',
			[ "ALTER TYPE public.mood ADD VALUE 'happy'",
				"UPDATE public.orders SET mood = 'happy' WHERE id % 7 = 0" ],
			[ [ "SELECT count(*) > 0 FROM public.orders WHERE mood = 'happy'", 't',
				'rows with the new value followed' ] ] ],
		[ 'a column dropped', [ 'ALTER TABLE public.orders DROP COLUMN memo' ], [] ],
		[ 'a foreign key NOT VALID, then VALIDATE',
			[ 'ALTER TABLE public.orders ADD COLUMN aid int',
				'UPDATE public.orders SET aid = id WHERE id <= 100',
				'ALTER TABLE public.orders ADD CONSTRAINT orders_aid_fk FOREIGN KEY (aid) '
				  . 'REFERENCES public.pgbench_accounts (aid) NOT VALID',
				'ALTER TABLE public.orders VALIDATE CONSTRAINT orders_aid_fk' ],
			[ [ "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_aid_fk'", 't',
				'the foreign key is validated' ] ] ]);
	my $n = 0;
	for my $s (@stages)
	{
		my ($name, $sqls, $checks) = @$s;
		my $what = 'stage ' . ++$n . " ($name)";
		run_sql($a{up}, $a{db}, $_) for @$sqls;
		ok($a{caught_up}->(), "$what: caught up");
		is(RelocateTest::query($a{down}, $a{db}, $_->[0]), $_->[1], "$what: $_->[2]")
		  for @$checks;
		$a{verify}->($what);
	}
	return;
}

1;

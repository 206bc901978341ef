# Copyright: pgrelocate authors.  Faults on real server processes for the
# end-to-end tests (issue 15): stop a whole cluster (postmaster and every
# backend, walsenders included) with SIGSTOP, let it go on with SIGCONT, or
# kill it for good with SIGKILL and start it again.

=pod

=head1 NAME

FaultTest - freeze, thaw and kill a PostgreSQL::Test::Cluster's processes

=head1 FUNCTIONS

=over

=item pids($node) => @pids

The postmaster and its children (backends, walsenders, auxiliary processes).

=item freeze($node) / thaw($node)

SIGSTOP / SIGCONT to all of them: the server keeps its TCP connections (the
kernel still acknowledges packets) but answers nothing, as a stalled host.

=item kill_and_restart($node)

SIGKILL to all of them (a stopped process dies too), then start the cluster
again: its clients see their connections reset.

=item hold($node, $db, $sql) => ($harness, \$stderr)

Start a psql session on $node that runs the statements of $sql (say, BEGIN,
LOCK TABLE ... and SELECT pg_sleep(600)) and stays in them.

=item release($node, $db, $harness)

End such a session: its psql and its backend (the one running pg_sleep(600)).

=item small_disk($node, $db, $size_mb) => ($tablespace_dir, $error)

Restart $node in a user and mount namespace of its own with a tmpfs of
$size_mb MB (a mount needs privileges the test user lacks: root in the
namespace, then the test user again in a nested one, since PostgreSQL
refuses to run as root), and move database $db to a tablespace on it (WAL
stays on the ordinary disk: a full WAL disk would PANIC the server, a
different fault).  Temporary files stay off the tmpfs.  $error when the
namespace cannot be made (skip the test then).

=item fill_disk($node, $reserve_rows)

Fill the tmpfs of small_disk with a table in a database "spare", leaving
free about $reserve_rows KB (rows of about 1 KB, committed, then dropped).
DROP DATABASE spare frees the space.

=back

=cut

package FaultTest;

use strict;
use warnings;

use Carp;
use IPC::Run ();
use PostgreSQL::Test::Utils ();

sub pids
{
	my ($node) = @_;
	my $pm = $node->{_pid} or croak 'node ' . $node->name . ' is not running';
	my @kids = grep { /^\d+$/ } split ' ', `ps -o pid= --ppid $pm`;
	return ($pm, @kids);
}

sub freeze
{
	my ($node) = @_;
	my @p = pids($node);
	# the postmaster first: it forks no new backend once stopped
	kill 'STOP', $p[0];
	kill 'STOP', pids($node);
	return scalar @p;
}

sub thaw
{
	my ($node) = @_;
	kill 'CONT', pids($node);
	return;
}

sub kill_and_restart
{
	my ($node) = @_;
	my @p = pids($node);
	kill 'KILL', @p;
	for (1 .. 100)
	{
		last unless grep { kill 0, $_ } @p;
		select undef, undef, undef, 0.1;
	}
	$node->{_pid} = undef;
	$node->start;
	return;
}

sub hold
{
	my ($node, $db, $sql) = @_;
	my $file = PostgreSQL::Test::Utils::tempdir() . '/hold.sql';
	PostgreSQL::Test::Utils::append_to_file($file, $sql);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
		'<', \undef, '>', \$out, '2>', \$err);
	return ($h, \$err);
}

sub release
{
	my ($node, $db, $h) = @_;
	$h->kill_kill;
	$node->safe_psql($db,
		q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()});
	return;
}

sub small_disk
{
	my ($node, $db, $size_mb) = @_;
	my $ts = PostgreSQL::Test::Utils::tempdir('small_ts');
	$node->stop;
	my ($uid, $gid) = ($<, (split ' ', $()[0]);
	my $pgctl = join ' ', 'pg_ctl', '-D', $node->data_dir, '-l', $node->logfile, '-w', 'start';
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'unshare', '-Urm', 'sh', '-c',
			"mount -t tmpfs -o size=${size_mb}m tmpfs '$ts' && exec unshare -U --map-user=$uid --map-group=$gid -- $pgctl"
		],
		'>', \$out, '2>', \$err) or return (undef, $err);
	$node->_update_pid(1);
	$node->safe_psql('postgres', "CREATE TABLESPACE small LOCATION '$ts'");
	$node->safe_psql('postgres', "ALTER DATABASE $db SET TABLESPACE small");
	$node->safe_psql('postgres', "ALTER DATABASE $db SET temp_tablespaces = 'pg_default'");
	return ($ts, undef);
}

sub fill_disk
{
	my ($node, $reserve_rows) = @_;
	$node->safe_psql('postgres', 'CREATE DATABASE spare TABLESPACE small');
	# the filler's generate_series spills to a temporary file: not on the
	# tmpfs, or the space it takes comes back when the failed insert ends
	$node->safe_psql('postgres', "ALTER DATABASE spare SET temp_tablespaces = 'pg_default'");
	$node->safe_psql('spare', qq{
CREATE TABLE public.filler (b text);
CREATE TABLE public.reserve (b text);
INSERT INTO public.reserve SELECT repeat(md5(i::text), 30) FROM generate_series(1, $reserve_rows) i;
DO \$\$
BEGIN
	LOOP
		BEGIN
			INSERT INTO public.filler SELECT repeat(md5(i::text), 30) FROM generate_series(1, 1000) i;
		EXCEPTION WHEN disk_full THEN
			EXIT;
		END;
	END LOOP;
END \$\$});
	$node->safe_psql('spare', 'DROP TABLE public.reserve');
	return;
}

1;

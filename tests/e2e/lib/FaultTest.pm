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

=back

=cut

package FaultTest;

use strict;
use warnings;

use Carp;

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

1;

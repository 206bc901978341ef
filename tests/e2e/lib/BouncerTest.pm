# Copyright: pgrelocate authors.  A real pgbouncer for the cutover tests.

=pod

=head1 NAME

BouncerTest - run a real pgbouncer (Debian package) in front of a test
cluster, talk to its admin console, and put a pgbench load through it

=head1 SYNOPSIS

  use BouncerTest;

  my $b = BouncerTest->start($src, 'app');        # [databases] app -> $src
  my $load = $b->load_start('app', clients => 8);
  ... pgrelocate cutover $b->cutover_args('app') ...
  my $stats = $b->load_stop($load);               # failed, processed, max_latency_ms
  $b->show_database('app')->{host};
  $b->stop;                                       # also done by an END block

=head1 DESCRIPTION

pgbouncer runs as the test user on a free loopback port with its files in a
temporary directory: auth_type trust (the clusters trust local users too),
pool_mode transaction (PAUSE then waits only for transactions in flight),
the test user in admin_users.  Every pgbouncer started is stopped in an END
block, also when the test dies.

=cut

package BouncerTest;

use strict;
use warnings;

use Carp;
use File::Temp ();
use IPC::Run ();
use Test::More;
use Time::HiRes ();

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RelocateTest;

my @started;

END
{
	local $?;
	$_->stop for @started;
}

sub _bin
{
	for my $p ('/usr/sbin/pgbouncer', '/usr/bin/pgbouncer')
	{
		return $p if -x $p;
	}
	return 'pgbouncer';
}

=pod

=over

=item BouncerTest->start($node, $db, %opts) => $bouncer

Write pgbouncer.ini with one entry C<$db> pointing at C<$node> (its socket
directory and port) and start pgbouncer (-d).  C<pool_size> (default 20).

=cut

sub start
{
	my ($class, $node, $db, %opts) = @_;
	my $dir = File::Temp->newdir('bouncer_XXXX', TMPDIR => 1);
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $user = getpwuid($<);
	my $self = bless {
		dir => $dir,
		port => $port,
		ini => "$dir/pgbouncer.ini",
		pidfile => "$dir/pgbouncer.pid",
		log => "$dir/pgbouncer.log",
		user => $user,
	}, $class;
	open my $fh, '>', "$dir/users.txt" or croak "users.txt: $!";
	print $fh qq{"$user" ""\n};
	close $fh;
	my $pool = $opts{pool_size} // 20;
	open $fh, '>', $self->{ini} or croak "$self->{ini}: $!";
	print $fh <<"EOT";
;; pgbouncer for a pgrelocate test
[databases]
$db = host=@{[ $node->host ]} port=@{[ $node->port ]} dbname=$db

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
admin_users = $user
pool_mode = transaction
default_pool_size = $pool
max_client_conn = 200
server_reset_query =
logfile = $self->{log}
pidfile = $self->{pidfile}
; the switch must not wait for idle server connections
server_lifetime = 3600
EOT
	close $fh;
	my ($out, $err) = ('', '');
	IPC::Run::run([ _bin(), '-d', $self->{ini} ], '>', \$out, '2>', \$err)
	  or croak "pgbouncer did not start: $err";
	push @started, $self;
	my $deadline = time + 30;
	until (eval { $self->admin('SHOW VERSION'); 1 })
	{
		croak "pgbouncer does not answer on port $port: $@" if time > $deadline;
		Time::HiRes::usleep(100_000);
	}
	note("pgbouncer on 127.0.0.1:$port, config $self->{ini}");
	return $self;
}

=pod

=item $b->stop

SIGTERM to pgbouncer and wait for it to exit (harmless twice).

=cut

sub stop
{
	my ($self) = @_;
	return if $self->{stopped};
	$self->{stopped} = 1;
	open my $fh, '<', $self->{pidfile} or return;
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	return unless $pid && kill(0, $pid);
	kill 'TERM', $pid;
	my $deadline = time + 10;
	Time::HiRes::usleep(50_000) while kill(0, $pid) && time < $deadline;
	kill 'KILL', $pid if kill(0, $pid);
	return;
}

=pod

=item $b->admin_uri / $b->uri($db)

The admin console's URI (for --pgbouncer), a database's URI through pgbouncer.

=item $b->cutover_args($db) => @args

--pgbouncer, --pgbouncer-config and --database for the tool.

=cut

sub uri
{
	my ($self, $db) = @_;
	return "postgresql://$self->{user}\@127.0.0.1:$self->{port}/$db";
}

sub admin_uri { my ($self) = @_; return $self->uri('pgbouncer'); }

sub cutover_args
{
	my ($self, $db) = @_;
	return ('--pgbouncer', $self->admin_uri, '--pgbouncer-config', $self->{ini}, '--database', $db);
}

=pod

=item $b->admin($command) => $output

Run a command on the admin console (psql, unaligned, tuples only, | separated).

=item $b->show_database($db) => { host, port, database, paused, ... } or undef

=item $b->query($db, $sql) => $output

Run SQL through pgbouncer.

=cut

sub admin
{
	my ($self, $cmd) = @_;
	return $self->query('pgbouncer', $cmd, header => 1);
}

sub query
{
	my ($self, $db, $sql, %opts) = @_;
	my ($out, $err) = ('', '');
	my @args = ('psql', '-X', '-A', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1',
		'-p', $self->{port}, '-d', $db, '-c', $sql);
	push @args, '-t' unless $opts{header};
	IPC::Run::run(\@args, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($opts{timeout} // 60))
	  or croak "psql through pgbouncer failed: $err";
	chomp $out;
	return $out;
}

sub show_database
{
	my ($self, $db) = @_;
	my @lines = split /\n/, $self->admin('SHOW DATABASES');
	my @cols = split /\|/, shift(@lines) // '';
	for my $l (@lines)
	{
		my @v = split /\|/, $l, -1;
		my %row;
		@row{@cols} = @v;
		return \%row if ($row{name} // '') eq $db;
	}
	return undef;
}

=pod

=item $b->wait_not_paused($db, $timeout_s) => $seconds_waited or undef

Poll SHOW DATABASES until C<$db> is not paused.

=cut

sub wait_not_paused
{
	my ($self, $db, $timeout_s) = @_;
	my $t0 = Time::HiRes::time();
	while (Time::HiRes::time() - $t0 <= $timeout_s)
	{
		my $row = eval { $self->show_database($db) };
		return Time::HiRes::time() - $t0 if $row && $row->{paused} eq '0';
		Time::HiRes::usleep(20_000);
	}
	return undef;
}

=pod

=item $b->load_start($db, %opts) => $load

pgbench through pgbouncer in the background (C<clients> 8, C<script>
FollowTest's TPC-B with a counter row, C<rate> optional), in runs of
C<seconds> (default 2) until load_stop, every transaction logged
(--log) so the longest one is known.

=item $b->load_stop($load) => { runs, failed_runs, processed, failed, max_latency_ms, output }

C<failed> sums pgbench's failed transactions; C<processed> the committed
ones; C<max_latency_ms> is the longest transaction of all runs.

=cut

sub load_start
{
	my ($self, $db, %opts) = @_;
	my $dir = File::Temp->newdir('load_XXXX', TMPDIR => 1);
	my $script = "$dir/load.sql";
	open my $fh, '>', $script or croak "cannot write $script: $!";
	print $fh $opts{script} // $FollowTest::TPCB_COUNTER_SCRIPT;
	close $fh;
	my $stop = "$dir/stop";
	my $clients = $opts{clients} // 8;
	my $seconds = $opts{seconds} // 2;
	my @rate = $opts{rate} ? ('-R', $opts{rate}) : ();
	my $cmd = join ' ',
	  "cd '$dir';",
	  "n=0; while [ ! -e '$stop' ]; do n=\$((n+1));",
	  "pgbench -n -c $clients -j 2 -T $seconds -s 1 @rate --log --log-prefix=tx\$n",
	  "-f '$script' -h 127.0.0.1 -p $self->{port} '$db' 2>&1;",
	  'rc=$?; echo "pgbench exit status $rc";',
	  '[ $rc -eq 0 ] || sleep 0.5;',
	  'done';
	my $out = '';
	my $h = IPC::Run::start([ 'bash', '-c', $cmd ], '<', \undef, '>', \$out, '2>&1');
	return { h => $h, out => \$out, stop => $stop, dir => $dir };
}

sub load_stop
{
	my ($self, $load) = @_;
	open my $fh, '>', $load->{stop} or croak "cannot create $load->{stop}: $!";
	close $fh;
	$load->{h}->finish;
	my $out = ${ $load->{out} };
	my %r = (runs => 0, failed_runs => 0, processed => 0, failed => 0, output => $out);
	$r{processed} += $1 while $out =~ /number of transactions actually processed: (\d+)/g;
	$r{failed} += $1 while $out =~ /number of failed transactions: (\d+)/g;
	for my $rc ($out =~ /^pgbench exit status (\d+)$/mg)
	{
		$r{runs}++;
		$r{failed_runs}++ if $rc != 0;
	}
	# --log lines: client_id transaction_no time(us) script_no time_epoch time_us
	my ($max, $at) = (0, 0);
	opendir my $d, $load->{dir} or croak "$load->{dir}: $!";
	for my $f (grep { /^tx\d+\./ } readdir $d)
	{
		open my $lf, '<', "$load->{dir}/$f" or next;
		while (<$lf>)
		{
			my @c = split;
			($max, $at) = ($c[2], "$c[4].$c[5]") if @c >= 6 && $c[2] > $max;
		}
		close $lf;
	}
	closedir $d;
	$r{max_latency_ms} = sprintf('%.1f', $max / 1000);
	note("load through pgbouncer: $r{runs} pgbench runs ($r{failed_runs} failed), "
		  . "$r{processed} transactions, $r{failed} failed, longest $r{max_latency_ms} ms");
	return \%r;
}

=pod

=back

=cut

1;

# A connection that fails gets the hint for its cause, decided without
# reading the server's text: the same hints whether the server speaks
# English or German (lc_messages), for a wrong or missing password, a
# pg_hba.conf "reject" line, a database or role that does not exist, a
# closed port and a socket directory nobody listens in.  The DETAIL is the
# server's message, in its language; the password never appears.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;

my $node = PostgreSQL::Test::Cluster->new('hints');
$node->init;
$node->append_conf('postgresql.conf', "lc_messages = C\nlisten_addresses = '127.0.0.1'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app; CREATE ROLE bob LOGIN');
my $password = 'correct horse battery';
my $wrong    = 'Tr0ub4dor-and-3-WRONG';
RelocateTest::enable_password_auth($node, 'alice', $password);
# bob is refused by pg_hba.conf before any password exchange
my $hba = $node->data_dir . '/pg_hba.conf';
my $old = slurp_file($hba);
open my $fh, '>', $hba or die "cannot write $hba: $!";
print $fh "local all bob reject\nhost all bob 127.0.0.1/32 reject\n", $old;
close $fh;
$node->reload;

my $sock   = $node->host;
my $port   = $node->port;
my $closed = RelocateTest::closed_port();
my $nobody = PostgreSQL::Test::Utils::tempdir();

my $password_hint = qr/HINT:  Check the user name and the password in ~\/\.pgpass/;
my $names_hint    = qr/HINT:  Check the database and user names in the connection string\./;
my $hba_hint      = qr/HINT:  Allow this client in the server's pg_hba\.conf/;
my $down_hint     = qr/HINT:  Check that the server is running and accepts connections/;

# name, connection string, what the hint says, the server's words per language
my @cases = (
	[ 'wrong password (TCP)', "host=127.0.0.1 port=$port dbname=app user=alice password='$wrong'",
		$password_hint, { C => qr/password authentication failed/, de => qr/Passwort-Authentifizierung/ } ],
	[ 'wrong password (socket)', "host=$sock port=$port dbname=app user=alice password='$wrong'",
		$password_hint, { C => qr/password authentication failed/, de => qr/Passwort-Authentifizierung/ } ],
	[ 'no password', "host=$sock port=$port dbname=app user=alice", $password_hint, {} ],
	[ 'pg_hba.conf rejects the user', "host=$sock port=$port dbname=app user=bob",
		$hba_hint, { C => qr/pg_hba\.conf rejects connection/, de => qr/lehnt Verbindung ab/ } ],
	[ 'pg_hba.conf rejects the user (TCP)', "host=127.0.0.1 port=$port dbname=app user=bob",
		$hba_hint, { C => qr/pg_hba\.conf rejects connection/, de => qr/lehnt Verbindung ab/ } ],
	[ 'no such database', "host=$sock port=$port dbname=nosuchdb",
		$names_hint, { C => qr/database "nosuchdb" does not exist/, de => qr/Datenbank »nosuchdb« existiert nicht/ } ],
	[ 'no such database after a good password',
		"host=127.0.0.1 port=$port dbname=nosuchdb user=alice password='$password'",
		qr/HINT:  Check the user name and the password .* and the database name/,
		{ C => qr/database "nosuchdb" does not exist/, de => qr/existiert nicht/ } ],
	[ 'no such role', "host=$sock port=$port dbname=app user=nosuchrole",
		$names_hint, { C => qr/role "nosuchrole" does not exist/, de => qr/Rolle »nosuchrole« existiert nicht/ } ],
	[ 'closed port', "host=127.0.0.1 port=$closed dbname=app connect_timeout=5", $down_hint, {} ],
	[ 'socket directory without a server', "host=$nobody port=$port dbname=app", $down_hint, {} ],
);

for my $lang ('C', 'de')
{
	if ($lang eq 'de')
	{
		# The locale comes from make deps (scripts/install-deps.sh).
		$node->safe_psql('postgres', "ALTER SYSTEM SET lc_messages = 'de_DE.UTF-8'");
		$node->reload;
		ok($node->poll_query_until('postgres',
				"SELECT current_setting('lc_messages') = 'de_DE.UTF-8'"),
			'the server speaks German now');
	}
	for my $c (@cases)
	{
		my ($name, $conn, $hint, $words) = @$c;
		my @expect = (qr/could not connect to the target/, $hint);
		push @expect, $words->{$lang} if $words->{$lang};
		RelocateTest::copy_fails_like("[$lang] $name", \@expect,
			command => 'status',
			target  => $conn,
			env     => { PGPASSFILE => "$nobody/no-pgpass" },
			secret  => $conn =~ /password='([^']+)'/ ? $1 : undef,
			timeout => 60);
	}
}

done_testing();

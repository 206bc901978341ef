# A LATIN1 source migrated to a UTF8 target (RELIABILITY.md 15): the copy
# and the follow phase convert every character, in values, keys and
# identifiers; verify compares the two encodings as the same text (no false
# alarm), and still finds a changed row by its key.
use strict;
use warnings;
use utf8;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use RelocateTest;
use FollowTest;

my $db = 'latin';
my ($src, $tgt) = RelocateTest::new_pair(dbname => 'app');
$src->safe_psql('postgres',
	"CREATE DATABASE $db TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'");
$tgt->safe_psql('postgres',
	"CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'");

# psql sends what this script holds as UTF-8; the server converts it
sub sql_utf8
{
	my ($node, $sql) = @_;
	utf8::encode(my $bytes = "SET client_encoding = 'UTF8';\n$sql");
	return $node->safe_psql($db, $bytes);
}

sub rows_utf8
{
	my ($node) = @_;
	my $out = sql_utf8($node, q{
SELECT string_agg(format('%s|%s|%s', id, t, c), E'\n' ORDER BY id) FROM public."café";
SELECT string_agg(format('%s|%s', "naïve", n), E'\n' ORDER BY "naïve" COLLATE "C") FROM public."Straße";
});
	utf8::decode($out);
	return $out;
}

sql_utf8($src, q{
CREATE TABLE public."café" (id int PRIMARY KEY, t text NOT NULL, c char(3));
INSERT INTO public."café" VALUES (1, 'crème brûlée', 'àéî'), (2, 'Ærøskøbing £5 ½', 'ÿÿÿ'), (3, 'plain ascii', NULL);
CREATE TABLE public."Straße" ("naïve" text PRIMARY KEY, n int NOT NULL);
INSERT INTO public."Straße" VALUES ('Zoë', 1), ('Ångström', 2), ('façade', 3), ('ß', 4);
});
FollowTest::create_marker($src, $db);

my $run = FollowTest::start_bg($src, $tgt, $db);
ok(FollowTest::wait_for_phase($tgt, $db, 'follow', 120), 'start copied the LATIN1 database and follows');
is(RelocateTest::query($tgt, $db, 'SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()'),
	'UTF8', 'the target database is UTF8');

# the follow phase: inserts, updates of values and of keys, a delete
sql_utf8($src, q{
INSERT INTO public."café" VALUES (4, 'señor, ¿qué?', '¡!¿');
UPDATE public."café" SET t = t || ' - no: ' || 'déjà vu' WHERE id = 1;
UPDATE public."café" SET t = replace(t, '-', '') WHERE id = 1;
UPDATE public."Straße" SET "naïve" = 'Zoë Ö' WHERE "naïve" = 'Zoë';
UPDATE public."Straße" SET n = n * 10 WHERE "naïve" = 'façade';
DELETE FROM public."Straße" WHERE "naïve" = 'ß';
INSERT INTO public."Straße" VALUES ('µ°±', 5);
});
ok(defined FollowTest::wait_caught_up($src, $tgt, $db, run => $run), 'the target caught up');
my $want = rows_utf8($src);
like($want, qr/Zoë Ö\|1/, 'the source holds the converted text');
is(rows_utf8($tgt), $want, 'the target holds the same characters, row by row');

sub verify_json
{
	my $r = RelocateTest::run_copy(FollowTest::conn($src, $tgt, $db),
		command => 'verify', args => [ '--json' ]);
	my $j = eval { JSON::PP->new->utf8->decode($r->{stdout}) } // {};
	return ($r, $j);
}

my ($r, $j) = verify_json();
is($r->{exit}, 0, 'verify across LATIN1 and UTF8: exit status 0')
  or diag("stdout:\n$r->{stdout}\nstderr:\n$r->{stderr}");
is($j->{row_differences_total}, 0, 'verify: no row difference');

sql_utf8($tgt, q{UPDATE public."Straße" SET n = -1 WHERE "naïve" = 'Ångström'});
($r, $j) = verify_json();
is($r->{exit}, 3, 'a changed row: exit status 3');
is_deeply(
	[ map { "$_->{table} $_->{kind} " . JSON::PP->new->canonical->encode($_->{key}) } @{ $j->{row_differences} // [] } ],
	[ 'Straße changed {"naïve":"Ångström"}' ],
	'verify names exactly that row, by its key in UTF-8')
  or diag("stdout:\n$r->{stdout}");

is(FollowTest::stop_run($run)->{exit}, 0, 'start stops on SIGINT with exit 0');
FollowTest::cleanup_ok('cleanup', $src, $tgt, $db);

done_testing();

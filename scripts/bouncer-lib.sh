# shellcheck shell=bash
# bouncer-lib.sh: a throwaway pgbouncer in front of a cluster of cluster-lib.sh,
# for the demo and the bench.  Source it after cluster-lib.sh and cl_setup.
#
#   bn_start source shop          # pgbouncer.ini with [databases] shop -> source
#   cl_run pgbench ... "$(bn_uri shop)"
#   pgrelocate cutover ... $(bn_cutover_args shop)
#   bn_admin "SHOW DATABASES"
#
# pgbouncer runs as the unprivileged user on a free loopback port, files in
# $CL_DIR/bouncer: auth_type trust (the clusters trust local connections),
# pool_mode transaction (PAUSE waits only for transactions in flight), the
# clusters' superuser `postgres` as the admin user.  Stopped at clean-up.

BN_DIR=""
BN_PORT=""

# bn_start CLUSTER DB: start pgbouncer with one database entry DB -> CLUSTER.
bn_start() {
  local cluster=$1 db=$2 i
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] ||
    cl_die "pgbouncer is not installed (Debian package pgbouncer; scripts/install-deps.sh)"
  BN_DIR="$CL_DIR/bouncer"
  BN_PORT=$(cl_free_port)
  mkdir -p "$BN_DIR"
  echo '"postgres" ""' >"$BN_DIR/users.txt"
  cat >"$BN_DIR/pgbouncer.ini" <<EOF
;; pgbouncer in front of the $cluster cluster (pgrelocate $0)
[databases]
$db = host=127.0.0.1 port=$(cl_port "$cluster") dbname=$db

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BN_PORT
unix_socket_dir =
auth_type = trust
auth_file = $BN_DIR/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
logfile = $BN_DIR/pgbouncer.log
pidfile = $BN_DIR/pgbouncer.pid
EOF
  [ "$(id -u)" -eq 0 ] && chown -R "$CL_USER" "$BN_DIR"
  cl_on_exit bn_stop
  cl_run "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" -d "$BN_DIR/pgbouncer.ini" >/dev/null ||
    cl_die "pgbouncer did not start (see $BN_DIR/pgbouncer.log)"
  for ((i = 0; i < 100; i++)); do
    bn_admin "SHOW VERSION" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cl_die "pgbouncer does not answer on 127.0.0.1:$BN_PORT"
}

bn_stop() {
  local pid
  pid=$(cat "$BN_DIR/pgbouncer.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# bn_uri DB: the database through pgbouncer.
bn_uri() { echo "postgresql://postgres@127.0.0.1:$BN_PORT/$1"; }

# bn_cutover_args DB: --pgbouncer, --pgbouncer-config and --database for pgrelocate.
bn_cutover_args() {
  echo "--pgbouncer $(bn_uri pgbouncer) --pgbouncer-config $BN_DIR/pgbouncer.ini --database $1"
}

# bn_admin SQL: a command on the admin console (unaligned, | separated, header).
bn_admin() {
  cl_run "$CL_PGBIN/psql" -X -A -q -h 127.0.0.1 -p "$BN_PORT" -U postgres -d pgbouncer -c "$1"
}

# bn_points_at DB: "host:port" pgbouncer's entry for DB uses now.
bn_points_at() {
  bn_admin "SHOW DATABASES" | awk -F'|' -v db="$1" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["name"] == db { print $col["host"] ":" $col["port"] }'
}

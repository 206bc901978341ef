#!/usr/bin/env bash
# make demo: the whole journey of a live migration on two throwaway local
# PostgreSQL servers and a local pgbouncer.
#
# Starts a source and a target server and a pgbouncer in front of the source
# (free loopback ports, a temporary directory, run as an unprivileged user),
# fills the source with a sample database, and puts an application load on it
# through pgbouncer (pgbench, every transaction logged).  Then, while that load
# runs: `pgrelocate start` (copy, then follow), its progress, `pgrelocate
# cutover` with the pause it measured, a few seconds of writes on the target
# that replicate back to the source, `pgrelocate rollback`, `pgrelocate
# cleanup`, and a row-by-row comparison of both servers.  Servers and
# pgbouncer are stopped and the directory removed at the end, also after an
# error or Ctrl-C.
#
# Environment: PGRELOCATE (binary, default ./pgrelocate), DEMO_SCALE (pgbench
# scale, default 10), DEMO_JOBS (default: number of CPUs).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/cluster-lib.sh
. "$top/scripts/cluster-lib.sh"
# shellcheck source=scripts/bouncer-lib.sh
. "$top/scripts/bouncer-lib.sh"

PGRELOCATE=${PGRELOCATE:-$top/pgrelocate}
DEMO_SCALE=${DEMO_SCALE:-10}
DEMO_JOBS=${DEMO_JOBS:-$(nproc)}
DB=shop
STEPS=10
LOAD_PID=""
START_PID=""
CUT_T0=0
CUT_T1=0
step_no=0
demo_t0=$SECONDS

if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B="" G="" R="" N=""; fi

step() {
  step_no=$((step_no + 1))
  printf '\n%s== Step %d/%d: %s%s\n' "$B" "$step_no" "$STEPS" "$1" "$N"
}
say() { printf '   %s\n' "$@"; }
ok() { printf '   %s%s%s\n' "$G" "$1" "$N"; }
bad() { printf '   %s%s%s\n' "$R" "$1" "$N"; }
src_sql() { cl_psql source -d "$DB" "$@"; }

# ---------------------------------------------------------------------------

start_servers() {
  step "Start two throwaway PostgreSQL 15 servers"
  [ -x "$PGRELOCATE" ] || cl_die "$PGRELOCATE not found: run 'make pgrelocate' (or 'make demo')"
  cl_setup pgrelocate-demo
  # A copy of the binary the unprivileged user can run, unchanged by rebuilds.
  install -m 755 "$PGRELOCATE" "$CL_DIR/pgrelocate"
  cl_create source wal_level=logical max_wal_senders=10 max_replication_slots=10 shared_buffers=256MB
  cl_create target wal_level=logical max_wal_senders=10 max_replication_slots=10 shared_buffers=256MB
  say "Everything lives in $CL_DIR and runs as user '$CL_USER'."
  say "source: $(cl_uri source "$DB")   (wal_level=logical, ready for live migration)"
  say "target: $(cl_uri target "$DB")   (empty database; wal_level=logical for the way back)"
  cl_psql source -d postgres -c "create database $DB"
  cl_psql target -d postgres -c "create database $DB"
}

fill_source() {
  step "Fill the source with a sample database '$DB'"
  say "pgbench tables at scale $DEMO_SCALE ($((DEMO_SCALE * 100000)) accounts) with their foreign keys..."
  cl_run pgbench -i -q -s "$DEMO_SCALE" --foreign-keys "$(cl_uri source "$DB")" >"$CL_DIR/pgbench-init.log" 2>&1 ||
    { cat "$CL_DIR/pgbench-init.log" >&2; cl_die "pgbench -i failed"; }
  say "...and the things a migration tends to get wrong:"
  src_sql <<'SQL'
-- An identity column, and numbers consumed by inserts that were rolled back:
-- the identity's next value is far beyond max(id).
create table customers (
  id bigint generated always as identity primary key,
  name text not null,
  email text unique,
  signed_up timestamptz not null
);
insert into customers (name, email, signed_up)
select 'customer ' || g, 'c' || g || '@example.com', '2024-01-01 00:00+00'::timestamptz + g * interval '37 min'
from generate_series(1, 5000) g;
begin;
insert into customers (name, signed_up) select 'rolled back', now() from generate_series(1, 2500);
rollback;

-- A sequence set far ahead (invoice numbers already handed out elsewhere) and
-- a foreign key.
create sequence invoice_no_seq start 100000;
create table orders (
  id bigserial primary key,
  customer_id bigint not null references customers (id),
  invoice_no bigint not null default nextval('invoice_no_seq'),
  total numeric(12, 2) not null,
  placed_at timestamptz not null
);
create index orders_customer_idx on orders (customer_id);
insert into orders (customer_id, total, placed_at)
select 1 + (g * 7919) % 5000, round((g * 13.37)::numeric % 1000, 2),
       '2024-01-01 00:00+00'::timestamptz + g * interval '9 min'
from generate_series(1, 20000) g;
select setval('invoice_no_seq', 5000000) \g /dev/null

-- Values that lose precision or break when a tool goes through text or
-- floats carelessly, and large jsonb/bytea values stored out of line (TOAST).
create table edge_values (
  id uuid primary key default gen_random_uuid(),
  label text not null,
  f8 float8,
  f4 real,
  num numeric,
  doc jsonb,
  blob bytea,
  at timestamptz
);
insert into edge_values (label, f8, f4, num, doc, blob, at) values
  ('zero and empty', 0, 0, 0, '{}', '\x', '2000-01-01 00:00+00'),
  ('minus zero', '-0', '-0', '-0.000', '[]', '\x00', '1970-01-01 00:00+00'),
  ('NaN', 'NaN', 'NaN', 'NaN', '{"a": null}', '\xff', 'epoch'),
  ('+Infinity', 'Infinity', 'Infinity', 'Infinity', '"Infinity"', '\x00ff00', 'infinity'),
  ('-Infinity', '-Infinity', '-Infinity', '-Infinity', 'true', '\x0d0a', '-infinity'),
  ('0.1 + 0.2', 0.1::float8 + 0.2::float8, 0.1::real + 0.2::real, 0.1 + 0.2, '0.30000000000000004', '\x01', now()),
  ('smallest subnormal', 4.9406564584124654e-324, 1.4e-45, 1e-300, '1e-300', '\x02', '4713-01-01 00:00+00 BC'),
  ('largest finite', 1.7976931348623157e308, 3.4028235e38, 9.99e300, '1e300', '\x03', '294276-12-31 23:59:59.999999+00'),
  ('long numeric', pi(), pi(), (repeat('9', 200) || '.' || repeat('1', 200))::numeric,
   '123456789012345678901234567890.123456789', '\x04', '2024-02-29 12:34:56.789012+05:30'),
  ('unicode and escapes', null, null, null,
   '{"elephant": "🐘", "quote": "\"", "nested": {"tab": "a\tb", "newline": "a\nb", "deep": [1, 2.5e-10, [[]]]}}',
   (select string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea) from generate_series(0, 255) b), null),
  ('1 MB of jsonb and bytea (TOAST)', null, null, null,
   (select jsonb_agg(jsonb_build_object('i', g, 'h', md5(g::text))) from generate_series(1, 20000) g),
   (select decode(string_agg(md5(g::text), ''), 'hex') from generate_series(1, 65536) g), null),
  ('all NULL', null, null, null, null, null, null);

-- A partitioned table: one parent, a partition per quarter and a default one.
create table events (
  id bigserial,
  happened_at timestamptz not null,
  kind text not null,
  payload jsonb,
  primary key (id, happened_at)
) partition by range (happened_at);
create table events_2024_q1 partition of events for values from ('2024-01-01') to ('2024-04-01');
create table events_2024_q2 partition of events for values from ('2024-04-01') to ('2024-07-01');
create table events_2024_q3 partition of events for values from ('2024-07-01') to ('2024-10-01');
create table events_other partition of events default;
insert into events (happened_at, kind, payload)
select '2024-01-01 00:00+00'::timestamptz + g * interval '7 min',
       (array['login', 'view', 'buy', 'logout'])[1 + g % 4], jsonb_build_object('n', g)
from generate_series(1, 80000) g;

-- Large objects (pg_largeobject), referenced from a table.
create table documents (id int primary key, title text not null, content oid not null);
insert into documents values
  (1, 'welcome letter', lo_from_bytea(0, convert_to('Dear customer, welcome!', 'UTF8'))),
  (2, 'scanned contract', lo_from_bytea(0, (select decode(string_agg(md5(g::text), ''), 'hex')
                                            from generate_series(1, 20000) g)));

-- A materialized view, derived data that must be rebuilt on the target.
create materialized view daily_sales as
select date_trunc('day', placed_at) as day, count(*) as orders, sum(total) as revenue
from orders group by 1;

-- A live database has planner statistics.
analyze;
SQL
  say "customers  identity column; rolled-back inserts pushed it to $(src_sql -At -c \
    "select last_value from pg_sequences where sequencename = 'customers_id_seq'") (max(id) is 5000)"
  say "orders     foreign key to customers; invoice_no_seq set ahead to 5000000"
  say "edge_values  uuid, NaN, ±Infinity, -0, 0.1+0.2, subnormal float8, 400-digit numeric,"
  say "           ±infinity timestamps, unicode jsonb, every byte value, 1 MB TOASTed values"
  say "events     partitioned by quarter (4 partitions), documents: 2 large objects"
  say "daily_sales  materialized view"
  echo
  src_sql -c "
    select format('%I.%I', n.nspname, c.relname) as \"table\",
           to_char(c.reltuples::bigint, 'FM999G999G999') as \"rows (estimate)\",
           pg_size_pretty(pg_total_relation_size(c.oid)) as size
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'm') and n.nspname = 'public'
    order by pg_total_relation_size(c.oid) desc" | sed 's/^/   /'
  say "source database size: $(src_sql -At -c "select pg_size_pretty(pg_database_size(current_database()))")"
}

tgt_sql() { cl_psql target -d "$DB" "$@"; }
src_count() { src_sql -At -c "select count(*) from $1"; }
tgt_count() { tgt_sql -At -c "select count(*) from $1"; }
relocate() { cl_run "$CL_DIR/pgrelocate" "$@" --source "$(cl_uri source "$DB")" --target "$(cl_uri target "$DB")"; }

start_load() {
  step "Put the application on pgbouncer and start writing"
  bn_start source "$DB"
  say "pgbouncer listens on 127.0.0.1:$BN_PORT (pool_mode transaction); its [databases] entry:"
  say "  $(grep "^$DB = " "$BN_DIR/pgbouncer.ini")"
  mkdir -p "$CL_DIR/load"
  cat >"$CL_DIR/load/app.sql" <<'EOS'
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
\set cid random(1, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO orders (customer_id, total, placed_at) VALUES (:cid, 100 + :delta / 100.0, now());
END;
EOS
  [ "$(id -u)" -eq 0 ] && chown -R "$CL_USER" "$CL_DIR/load"
  # rounds of 5 s until a stop file appears: each round prints its summary
  cl_run bash -c "n=0; while [ ! -e '$CL_DIR/load/stop' ]; do n=\$((n + 1));
    pgbench -n -c 8 -j 2 -R ${DEMO_TPS:-200} -T 5 -s $DEMO_SCALE -f '$CL_DIR/load/app.sql' \\
      --log --log-prefix='$CL_DIR/load/tx\$n' '$(bn_uri "$DB")' || sleep 0.5; done" \
    >"$CL_DIR/load/pgbench.out" 2>&1 &
  LOAD_PID=$!
  cl_on_exit "touch '$CL_DIR/load/stop'"
  say "pgbench: 8 clients, ${DEMO_TPS:-200} transactions/s through pgbouncer, each a TPC-B transfer plus a"
  say "new order (orders.id and invoice_no come from sequences). It runs from now on."
  sleep 3
  say "orders on the source: $(src_count orders) and counting."
}

run_start() {
  step "pgrelocate start: copy the database, then follow its changes"
  echo "   \$ pgrelocate start --source $(cl_uri source "$DB") --target $(cl_uri target "$DB") --replica-identity-full"
  relocate start --replica-identity-full --jobs "$DEMO_JOBS" --progress plain >"$CL_DIR/start.log" 2>&1 &
  START_PID=$!
  cl_on_exit "kill -INT $START_PID"
  say "(pgbench_history has no primary key: --replica-identity-full lets its changes replicate.)"
  local phase="" last="" t0=$SECONDS
  until [ "$phase" = follow ]; do
    kill -0 "$START_PID" 2>/dev/null || { tail -n 20 "$CL_DIR/start.log" >&2; cl_die "pgrelocate start failed"; }
    phase=$(tgt_sql -At -c "select phase from pgrelocate.migration" 2>/dev/null || true)
    [ -n "$phase" ] && [ "$phase" != "$last" ] && say "phase: $phase ($((SECONDS - t0)) s)"
    last=$phase
    sleep 0.5
  done
  sleep 3
  echo
  echo "   \$ pgrelocate status --target ... --source ..."
  cl_run "$CL_DIR/pgrelocate" status --target "$(cl_uri target "$DB")" --source "$(cl_uri source "$DB")" |
    sed 's/^/   /' | head -n 30
  ok "copied in $((SECONDS - t0)) s while the application kept writing; now following its changes."
}

run_switch() {
  local what=$1 out
  echo "   \$ pgrelocate $what --source ... --target ... $(bn_cutover_args "$DB") --max-pause 2s"
  # shellcheck disable=SC2046 # the options are words
  if ! out=$(relocate "$what" $(bn_cutover_args "$DB") --max-pause 2s 2>"$CL_DIR/$what.log"); then
    tail -n 20 "$CL_DIR/$what.log" >&2
    bad "pgrelocate $what failed (above)."
    exit 1
  fi
  printf '   %s\n' "${out//$'\n'/$'\n'   }"
}

run_cutover() {
  step "pgrelocate cutover: move the application to the target"
  say "pgbouncer PAUSEs the database (clients wait, they get no error), pgrelocate waits until the"
  say "target has every transaction the source committed, sets the sequences, points pgbouncer's"
  say "entry at the target, RELOADs and RESUMEs. Reverse replication starts before the RESUME."
  echo
  CUT_T0=$(date +%s.%N)
  run_switch cutover
  CUT_T1=$(date +%s.%N)
  echo
  say "pgbouncer now sends the application to $(bn_points_at "$DB") (the target's port is $(cl_port target))."
  say "The entry in pgbouncer.ini: $(grep "^$DB = " "$BN_DIR/pgbouncer.ini")"
}

writes_on_target() {
  step "A few seconds on the new side"
  local before after
  before=$(tgt_count orders)
  sleep 5
  after=$(tgt_count orders)
  say "orders on the target: $before -> $after: the application writes there now."
  sleep 1
  say "orders on the source: $(src_count orders): reverse replication keeps the old server current."
  say "last order on each side: target #$(tgt_sql -At -c "select max(id) from orders")," \
    "source #$(src_sql -At -c "select max(id) from orders")"
}

stop_load() {
  touch "$CL_DIR/load/stop"
  wait "$LOAD_PID" 2>/dev/null || true
  local failed processed longest aborted
  processed=$(awk '/actually processed/ { n += $NF } END { print n + 0 }' "$CL_DIR/load/pgbench.out")
  failed=$(awk '/number of failed transactions/ { n += $5 } END { print n + 0 }' "$CL_DIR/load/pgbench.out")
  aborted=$(grep -c 'aborted' "$CL_DIR/load/pgbench.out" || true)
  # --log: client_id transaction_no latency_us script_no end_epoch end_us; with -R the
  # latency counts from the scheduled start, so a pause also delays the ones queued behind
  longest=$(cat "$CL_DIR"/load/tx* 2>/dev/null | awk -v a="$CUT_T0" -v b="$CUT_T1" '
    { lat = $3 / 1000; start = $5 + $6 / 1e6 - $3 / 1e6
      if (lat > all) all = lat
      if (start >= a - 1 && start <= b + 1 && lat > near) near = lat }
    END { printf "%.0f ms around the cutover, %.0f ms over the whole run", near, all }')
  say "the application (pgbench) committed $processed transactions; failed: $failed;" \
    "clients aborted: $aborted."
  say "longest transaction: $longest (on 2 shared CPUs, the copy also slows it)."
  if [ "$failed" = 0 ] && [ "$aborted" = 0 ]; then
    ok "no transaction failed through the copy, the cutover and the time on the target."
  else
    bad "some transactions failed: see $CL_DIR/load/pgbench.out"
  fi
}

run_rollback() {
  step "pgrelocate rollback: back to the source, losing nothing"
  say "Stopping the load first, so the comparison at the end can be exact (after a rollback"
  say "nothing replicates any more; in real life the application would just keep going)."
  stop_load
  echo
  run_switch rollback
  echo
  say "pgbouncer sends the application to $(bn_points_at "$DB") again (the source's port is $(cl_port source))."
  wait "$START_PID" 2>/dev/null || true
  START_PID=""
  say "pgrelocate start saw the rollback and ended by itself."
}

run_cleanup() {
  step "pgrelocate cleanup: remove slots, publications, origins and state"
  relocate cleanup 2>&1 | sed 's/^/   /'
}

verify() {
  step "Check that the target holds exactly what the source holds"
  say "daily_sales is a materialized view, derived data that neither side recomputes by itself:"
  say "refreshed on both sides first."
  src_sql -c "refresh materialized view daily_sales"
  tgt_sql -c "refresh materialized view daily_sales"
  local diffs=0 t order s_line t_line s_rows t_rows s_md5
  local -a tables
  mapfile -t tables < <(cl_tables source "$DB")
  say "Each table: its row count and the md5 of all its rows in primary key order, on both sides."
  printf '   %-30s %12s %12s  %s\n' "table" "source rows" "target rows" "content"
  for t in "${tables[@]}"; do
    order=$(cl_table_order source "$DB" "$t")
    s_line=$(cl_table_digest source "$DB" "$t" "$order")
    t_line=$(cl_table_digest target "$DB" "$t" "$order" 2>/dev/null || echo "missing -")
    read -r s_rows s_md5 <<<"$s_line"
    read -r t_rows _ <<<"$t_line"
    if [ "$s_line" = "$t_line" ]; then
      printf '   %-30s %12s %12s  %ssame%s (md5 %s)\n' "$t" "$s_rows" "$t_rows" "$G" "$N" "${s_md5:0:12}"
    else
      printf '   %-30s %12s %12s  %sDIFFERENT%s\n' "$t" "$s_rows" "$t_rows" "$R" "$N"
      diffs=$((diffs + 1))
    fi
  done
  local extra
  extra=$(comm -13 <(printf '%s\n' "${tables[@]}" | sort) <(cl_tables target "$DB" | sort))
  if [ -n "$extra" ]; then
    bad "tables on the target that the source does not have: $(echo "$extra" | tr '\n' ' ')"
    diffs=$((diffs + 1))
  fi

  echo
  local s_seq t_seq n_seq
  s_seq=$(cl_sequences source "$DB")
  t_seq=$(cl_sequences target "$DB")
  n_seq=$(grep -c . <<<"$s_seq" || true)
  if [ "$s_seq" = "$t_seq" ]; then
    ok "sequences: all $n_seq have the source's value on the target"
    grep -E 'invoice_no_seq|customers_id_seq' <<<"$s_seq" | sed 's/|/ = /; s/^/     /'
  else
    bad "sequences DIFFER (source | target):"
    diff <(echo "$s_seq") <(echo "$t_seq") | sed 's/^/     /' || true
    diffs=$((diffs + 1))
  fi

  local s_lo t_lo
  s_lo=$(cl_lo_digest source "$DB")
  t_lo=$(cl_lo_digest target "$DB")
  if [ "$s_lo" = "$t_lo" ]; then
    ok "large objects: ${s_lo%% *} of ${s_lo%% *}, same oids and same bytes"
  else
    bad "large objects DIFFER: source ${s_lo}, target ${t_lo}"
    diffs=$((diffs + 1))
  fi

  cl_schema source "$DB" >"$CL_DIR/schema-source.sql"
  cl_schema target "$DB" >"$CL_DIR/schema-target.sql"
  if diff -u "$CL_DIR/schema-source.sql" "$CL_DIR/schema-target.sql" >"$CL_DIR/schema.diff"; then
    ok "schema: pg_dump --schema-only of both sides is identical ($(wc -l <"$CL_DIR/schema-source.sql") lines: tables, indexes, constraints, foreign keys, partitions, views)"
  else
    bad "schema DIFFERS (diff source target, first 40 lines):"
    head -n 40 "$CL_DIR/schema.diff" | sed 's/^/     /'
    diffs=$((diffs + 1))
  fi

  local stats
  stats=$(cl_query target "$DB" "
    select count(*) filter (where coalesce(last_analyze, last_autoanalyze) is not null) || ' of ' || count(*)
    from pg_stat_user_tables where schemaname not in ($CL_OWN_SCHEMAS)")
  say "planner statistics on the target: $stats tables analyzed (good query plans from the first query)"

  echo
  if [ "$diffs" -eq 0 ]; then
    ok "${B}Result: the target is an exact copy of the source.${N}"
  else
    bad "${B}Result: $diffs difference(s) between source and target.${N}"
    return 1
  fi
}

stop_servers() {
  step "Stop the servers and remove the temporary directory"
  cl_stop source
  cl_stop target
  say "Both servers stopped; $CL_DIR is removed on exit. Demo took $((SECONDS - demo_t0)) s."
}

main() {
  echo "${B}pgrelocate demo${N}: move a live PostgreSQL database to another server and back,"
  echo "with the application writing through pgbouncer the whole time."
  start_servers
  fill_source
  start_load
  run_start
  run_cutover
  writes_on_target
  run_rollback
  run_cleanup
  verify
  stop_servers
}

main "$@"

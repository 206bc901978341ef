#!/usr/bin/env bash
# make demo: pgrelocate on two throwaway local PostgreSQL servers.
#
# Starts a source and a target server (free loopback ports, a temporary
# directory, run as an unprivileged user), fills the source with a sample
# database, copies it with `pgrelocate copy` and shows that the target holds
# exactly what the source holds.  The servers are stopped and the directory
# removed at the end, also after an error or Ctrl-C.
#
# Environment: PGRELOCATE (binary, default ./pgrelocate), DEMO_SCALE (pgbench
# scale, default 10), DEMO_JOBS (default: number of CPUs).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/cluster-lib.sh
. "$top/scripts/cluster-lib.sh"

PGRELOCATE=${PGRELOCATE:-$top/pgrelocate}
DEMO_SCALE=${DEMO_SCALE:-10}
DEMO_JOBS=${DEMO_JOBS:-$(nproc)}
DB=shop
STEPS=5
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
  cl_create target shared_buffers=256MB
  say "Everything lives in $CL_DIR and runs as user '$CL_USER'."
  say "source: $(cl_uri source "$DB")   (wal_level=logical, ready for live migration)"
  say "target: $(cl_uri target "$DB")   (empty database, as a new server would be)"
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

run_copy() {
  step "Copy it with pgrelocate"
  say "One consistent snapshot of the source; schema first, then the rows with $DEMO_JOBS parallel"
  say "binary COPY streams, then indexes, constraints, sequences, large objects and ANALYZE."
  echo
  echo "   \$ pgrelocate copy --source $(cl_uri source "$DB") --target $(cl_uri target "$DB") --jobs $DEMO_JOBS"
  echo
  local t0=$SECONDS
  if ! cl_run "$CL_DIR/pgrelocate" copy --source "$(cl_uri source "$DB")" --target "$(cl_uri target "$DB")" \
    --jobs "$DEMO_JOBS"; then
    bad "pgrelocate copy failed (exit code above)."
    exit 1
  fi
  echo
  say "pgrelocate copy finished in $((SECONDS - t0)) s."
}

verify() {
  step "Check that the target holds exactly what the source holds"
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
  echo "${B}pgrelocate demo${N}: copy a live PostgreSQL database to another server, exactly."
  start_servers
  fill_source
  run_copy
  verify
  stop_servers
}

main "$@"

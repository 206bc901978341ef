# shellcheck shell=bash
# bench/lib.sh: clusters, timing, verification and reporting for run-bench.sh.
# Needs scripts/cluster-lib.sh sourced first.

# Identical settings for the source and the target, for every contender:
# a 2-core / 24 GB machine running both servers, data far smaller than RAM.
BENCH_SETTINGS=(
  shared_buffers=2GB effective_cache_size=8GB
  maintenance_work_mem=1GB work_mem=64MB
  wal_level=logical max_wal_senders=10 max_replication_slots=10
  wal_buffers=64MB max_wal_size=16GB min_wal_size=1GB
  checkpoint_timeout=30min checkpoint_completion_target=0.9
  max_worker_processes=16 max_parallel_workers=2 max_parallel_workers_per_gather=2
  max_parallel_maintenance_workers=2
  random_page_cost=1.1 effective_io_concurrency=200
  max_connections=100
)

BENCH_RESULTS=() # "section|contender|seconds|MB/s|rss_kb|data|sequences|stats|schema|note|load"

bench_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

bench_start_clusters() {
  bench_log "starting source and target clusters (PostgreSQL 15; settings: ${BENCH_SETTINGS[*]})"
  cl_create source "${BENCH_SETTINGS[@]}"
  cl_create target "${BENCH_SETTINGS[@]}"
  cl_psql source -d postgres -c "create database $BENCH_DB"
  cl_psql target -d postgres -c "create database $BENCH_DB"
  bench_log "source $(cl_uri source "$BENCH_DB"), target $(cl_uri target "$BENCH_DB"), data in $CL_DIR"
}

# A freshly created, empty target database; both servers checkpointed and the
# OS's dirty pages written, so a run does not pay for the previous one.
bench_reset_target() {
  cl_psql target -d postgres -c "drop database if exists $BENCH_DB with (force)" -c "create database $BENCH_DB"
  cl_psql source -d postgres -At -c "
    select pg_drop_replication_slot(slot_name) from pg_replication_slots where not active" >/dev/null
  cl_psql source -d postgres -c checkpoint
  cl_psql target -d postgres -c checkpoint
  sync
}

bench_db_bytes() { cl_query "$1" "$BENCH_DB" "select pg_database_size(current_database())"; }

bench_now() { date +%s.%N; }
bench_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# bench_timed TAG LOG CMD...: run CMD as the unprivileged user under GNU time,
# output appended to LOG; wall seconds and peak RSS (KB) of the process tree's
# largest process go to $CL_DIR/rss.TAG and LOG.  Returns CMD's exit status.
bench_timed() {
  local tag=$1 log=$2 rc=0
  shift 2
  echo "\$ $*" >>"$log"
  cl_run /usr/bin/time -f '%e %M' -o "$CL_DIR/rss.$tag" "$@" >>"$log" 2>&1 || rc=$?
  echo "# $tag: exit $rc, $(bench_rss_field "$tag" 1) s wall, peak RSS $(bench_rss_field "$tag" 2) KB," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
  return "$rc"
}

bench_rss_field() { tail -n 1 "$CL_DIR/rss.$1" 2>/dev/null | cut -d' ' -f"$2"; }
bench_rss_kb() {
  local kb
  kb=$(bench_rss_field "$1" 2)
  echo "${kb:-0}"
}

# bench_digest_all NAME: cl_table_digest of every source table on cluster NAME,
# BENCH_JOBS tables at a time, largest first; fills BENCH_DIGEST[table] ("missing"
# when the table cannot be read).
bench_digest_all() {
  local name=$1 i running=0 dir="$CL_DIR/digests"
  declare -gA BENCH_DIGEST=()
  rm -rf "$dir"
  mkdir -p "$dir"
  for i in "${!BENCH_TABLES[@]}"; do
    (cl_table_digest "$name" "$BENCH_DB" "${BENCH_TABLES[i]}" "${BENCH_ORDER[${BENCH_TABLES[i]}]}" \
      >"$dir/$i" 2>"$dir/$i.err" || echo missing >"$dir/$i") &
    running=$((running + 1))
    if [ "$running" -ge "$BENCH_JOBS" ]; then
      wait -n || true
      running=$((running - 1))
    fi
  done
  wait
  for i in "${!BENCH_TABLES[@]}"; do
    BENCH_DIGEST[${BENCH_TABLES[i]}]=$(cat "$dir/$i")
  done
}

# bench_fingerprint_source: row count and digest of every source table, once.
bench_fingerprint_source() {
  local t t0
  t0=$(bench_now)
  mapfile -t BENCH_TABLES < <(cl_tables source "$BENCH_DB" | while read -r t; do
    echo "$(cl_query source "$BENCH_DB" "select pg_total_relation_size('$t')") $t"
  done | sort -rn | cut -d' ' -f2-)
  declare -gA BENCH_SRC_DIGEST=() BENCH_ORDER=()
  for t in "${BENCH_TABLES[@]}"; do
    BENCH_ORDER[$t]=$(cl_table_order source "$BENCH_DB" "$t")
  done
  bench_digest_all source
  for t in "${BENCH_TABLES[@]}"; do
    [ "${BENCH_DIGEST[$t]}" != missing ] || cl_die "cannot read source table $t"
    BENCH_SRC_DIGEST[$t]=${BENCH_DIGEST[$t]}
  done
  BENCH_SRC_SEQS=$(cl_sequences source "$BENCH_DB")
  BENCH_SRC_LO=$(cl_lo_digest source "$BENCH_DB")
  cl_schema source "$BENCH_DB" >"$CL_DIR/schema-source.sql"
  bench_log "source fingerprint: ${#BENCH_TABLES[@]} tables, $(grep -c . <<<"$BENCH_SRC_SEQS" || true) sequences ($(bench_secs "$t0" "$(bench_now)") s)"
}

# bench_check_stats: "A/B" = non-empty source tables that have pg_stats rows on
# the target / all non-empty source tables; also reltuples > 0.  Run right
# after a contender finishes, before autovacuum has a chance to add them.
bench_check_stats() {
  local t rows nonempty=0 with_stats=0 with_tuples=0 line
  for t in "${BENCH_TABLES[@]}"; do
    rows=${BENCH_SRC_DIGEST[$t]%% *}
    [ "$rows" -gt 0 ] || continue
    nonempty=$((nonempty + 1))
    line=$(cl_query target "$BENCH_DB" "
      select (c.reltuples > 0)::int, (exists (select from pg_stats s
                                              where s.schemaname = n.nspname and s.tablename = c.relname))::int
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.oid = to_regclass('$t')" 2>/dev/null || true)
    [ "${line%%|*}" = 1 ] && with_tuples=$((with_tuples + 1))
    [ "${line##*|}" = 1 ] && with_stats=$((with_stats + 1))
  done
  echo "pg_stats $with_stats/$nonempty, reltuples>0 $with_tuples/$nonempty"
}

# bench_verify_target LOG: compare the target with the source fingerprint.
# Sets V_DATA (identical/DIFFERENT), V_SEQ (match/DIFFERENT), V_SCHEMA.
bench_verify_target() {
  local log=$1 t got bad=0 extra
  bench_digest_all target
  for t in "${BENCH_TABLES[@]}"; do
    got=${BENCH_DIGEST[$t]}
    if [ "$got" != "${BENCH_SRC_DIGEST[$t]}" ]; then
      echo "DIFFERENT $t: source ${BENCH_SRC_DIGEST[$t]}, target $got" >>"$log"
      bad=$((bad + 1))
    fi
  done
  extra=$(comm -13 <(printf '%s\n' "${BENCH_TABLES[@]}" | sort) <(cl_tables target "$BENCH_DB" | sort))
  [ -z "$extra" ] || { echo "extra tables on target: $extra" >>"$log"; bad=$((bad + 1)); }
  got=$(cl_lo_digest target "$BENCH_DB")
  [ "$got" = "$BENCH_SRC_LO" ] || { echo "large objects differ: $BENCH_SRC_LO vs $got" >>"$log"; bad=$((bad + 1)); }
  if [ "$bad" -eq 0 ]; then V_DATA=identical; else V_DATA="DIFFERENT($bad)"; fi

  got=$(cl_sequences target "$BENCH_DB")
  if [ "$got" = "$BENCH_SRC_SEQS" ]; then
    V_SEQ=match
  else
    V_SEQ=DIFFERENT
    diff <(echo "$BENCH_SRC_SEQS") <(echo "$got") | sed 's/^/sequences: /' >>"$log" || true
  fi

  cl_schema target "$BENCH_DB" >"$CL_DIR/schema-target.sql"
  if diff -u "$CL_DIR/schema-source.sql" "$CL_DIR/schema-target.sql" >>"$log"; then
    V_SCHEMA=same
  else
    V_SCHEMA=DIFFERENT
  fi
}

# bench_record SECTION CONTENDER STATUS T0 T1 RSS_KB LOG: verify and remember.
bench_record() {
  local section=$1 who=$2 status=$3 t0=$4 t1=$5 rss=$6 log=$7 secs mbps stats load
  secs=$(bench_secs "$t0" "$t1")
  load=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$status" -ne 0 ]; then
    bench_log "$who FAILED (exit $status) after $secs s; last lines of $log:"
    tail -n 15 "$log" | sed 's/^/    /'
  fi
  stats=$(bench_check_stats)
  bench_verify_target "$log"
  mbps=$(awk -v b="$BENCH_SRC_BYTES" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0) ? b / 1048576 / s : 0 }')
  local note=ok
  [ "$status" -eq 0 ] || note="exit $status"
  BENCH_RESULTS+=("$section|$who|$secs|$mbps|$rss|$V_DATA|$V_SEQ|$stats|$V_SCHEMA|$note|$load")
  bench_log "$who: $secs s, $mbps MB/s, peak RSS $((rss / 1024)) MB, data $V_DATA, sequences $V_SEQ, $stats," \
    "schema $V_SCHEMA ($note; load average at the end $load)"
}

# bench_report SECTION BASE: table of a section's results (with BENCH_REPEAT
# runs: the fastest good run; data/sequences/schema show the worst run, RSS the
# highest) and time ratios of BASE (the contender under test) to each peer.
bench_report() {
  printf '%s\n' "${BENCH_RESULTS[@]}" | awk -F'|' -v section="$1" -v base="$2" '
    $1 != section { next }
    {
      who = $2
      if (!(who in runs)) { order[++n] = who; best[who] = -1; rss[who] = 0 }
      runs[who] = runs[who] (runs[who] == "" ? "" : " ") $3 ($10 == "ok" ? "" : "!") "@" $11
      nruns[who]++
      if ($5 + 0 > rss[who]) rss[who] = $5 + 0
      if ($10 == "ok" && (best[who] < 0 || $3 + 0 < best[who])) { best[who] = $3 + 0; mbps[who] = $4; stats[who] = $8 }
      if ($10 != "ok") { failed[who]++; status[who] = $10 }
      if (!(who in data) || $6 != "identical") data[who] = $6
      if (!(who in seq) || $7 != "match") seq[who] = $7
      if (!(who in schema) || $9 != "same") schema[who] = $9
      if (!(who in stats)) stats[who] = $8
    }
    END {
      printf "\n== %s\n", section
      printf "%-14s %8s %8s %9s  %-12s %-10s %-32s %-9s %-8s %s\n", "contender", "seconds", "MB/s", "peak RSS",
             "data", "sequences", "planner statistics", "schema", "status", "runs: s@load"
      for (i = 1; i <= n; i++) {
        w = order[i]
        st = failed[w] ? (failed[w] == nruns[w] ? status[w] : failed[w] "/" nruns[w] " failed") : "ok"
        printf "%-14s %8s %8s %6d MB  %-12s %-10s %-32s %-9s %-8s %s\n", w,
               best[w] < 0 ? "-" : sprintf("%.1f", best[w]), best[w] < 0 ? "-" : mbps[w], rss[w] / 1024,
               data[w], seq[w], stats[w], schema[w], st, runs[w]
      }
      if (!(base in best) || best[base] <= 0) exit
      for (i = 1; i <= n; i++) {
        w = order[i]
        if (w == base || best[w] <= 0) continue
        printf "%s/%s = %.2fx (time: %.1f s vs %.1f s)\n", base, w, best[base] / best[w], best[base], best[w]
      }
    }'
}

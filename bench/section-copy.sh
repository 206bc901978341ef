# shellcheck shell=bash
# bench/section-copy.sh: full copy of the database, pgrelocate against its peers.
# Each contender starts from a freshly created empty target database; wall
# time covers everything the contender needs until the target is usable.

copy_pgrelocate() {
  local log=$1 args=(copy --source "$(cl_uri source "$BENCH_DB")" --target "$(cl_uri target "$BENCH_DB")"
    --jobs "$BENCH_JOBS")
  [ -n "${BENCH_SPLIT:-}" ] && args+=(--split-larger-than "$BENCH_SPLIT")
  [ -x "$CL_DIR/pgrelocate" ] || { echo "pgrelocate binary not built" >>"$log"; return 127; }
  bench_timed pgrelocate "$log" "$CL_DIR/pgrelocate" "${args[@]}"
}
copy_pgrelocate_rss() { bench_rss_kb pgrelocate; }

# pg_dump directory format in parallel, uncompressed, then pg_restore in parallel.
copy_dump_restore() {
  local log=$1 dir="$CL_DIR/dump" rc=0
  rm -rf "$dir"
  bench_timed pg_dump "$log" pg_dump -Fd -j "$BENCH_JOBS" -Z0 -f "$dir" -d "$(cl_uri source "$BENCH_DB")" || rc=$?
  [ "$rc" -eq 0 ] &&
    { bench_timed pg_restore "$log" pg_restore -j "$BENCH_JOBS" -d "$(cl_uri target "$BENCH_DB")" "$dir" || rc=$?; }
  return "$rc"
}
copy_dump_restore_rss() {
  local a b
  a=$(bench_rss_kb pg_dump) b=$(bench_rss_kb pg_restore)
  echo $((a > b ? a : b))
}
copy_dump_restore_after() { rm -rf "$CL_DIR/dump"; }

copy_pgcopydb() {
  local log=$1 args
  command -v pgcopydb >/dev/null || { echo "pgcopydb is not installed" >>"$log"; return 127; }
  rm -rf "$CL_DIR/pgcopydb"
  args=(clone --source "$(cl_uri source "$BENCH_DB")" --target "$(cl_uri target "$BENCH_DB")"
    --table-jobs "$BENCH_JOBS" --index-jobs "$BENCH_JOBS" --dir "$CL_DIR/pgcopydb")
  [ -n "${BENCH_PGCOPYDB_SPLIT:-}" ] && args+=(--split-tables-larger-than "$BENCH_PGCOPYDB_SPLIT")
  bench_timed pgcopydb "$log" pgcopydb "${args[@]}"
}
copy_pgcopydb_rss() { bench_rss_kb pgcopydb; }
copy_pgcopydb_after() { rm -rf "$CL_DIR/pgcopydb"; }

# What each server spent on a run, beside the wall time (which on a shared
# machine is noise): CPU ticks and bytes written by a cluster's processes,
# "ticks bytes": the postmaster with the backends it reaped (cutime,
# cstime; Linux adds a reaped child's I/O to its parent's) and the
# processes alive now.
COPY_USAGE=() # "contender|round|source CPU s|target CPU s|target WAL MB|target written MB|vacuum WAL MB|vacuum written MB"
copy_cluster_usage() {
  local pm c ticks bytes
  pm=$(head -n 1 "$CL_DIR/$1/data/postmaster.pid")
  ticks=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{ print $12 + $13 + $14 + $15 }')
  bytes=$(awk '/^write_bytes/ { print $2 }' "/proc/$pm/io")
  for c in $(pgrep -P "$pm"); do
    ticks=$((ticks + $(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
    bytes=$((bytes + $(awk '/^write_bytes/ { print $2 }' "/proc/$c/io" 2>/dev/null || echo 0)))
  done
  echo "$ticks $bytes"
}
copy_wal_lsn() { cl_query target postgres "select pg_current_wal_lsn()"; }
copy_wal_mb() { cl_query target postgres "select round((pg_current_wal_lsn() - '$1') / 1048576.0)"; }

# After a run: a checkpoint writes what the run left dirty (counted with the
# run), then VACUUM of the copied database and a checkpoint: the hint-bit,
# visibility-map and freeze writes a copy without COPY FREEZE leaves behind.
copy_usage_record() {
  local who=$1 round=$2 s0=$3 t0=$4 lsn0=$5 hz s1 t1 wal lsn1 t2 vwal
  hz=$(getconf CLK_TCK)
  cl_psql target -d postgres -c checkpoint >/dev/null
  s1=$(copy_cluster_usage source) t1=$(copy_cluster_usage target) wal=$(copy_wal_mb "$lsn0")
  lsn1=$(copy_wal_lsn)
  cl_psql target -d "$BENCH_DB" -c vacuum -c checkpoint >/dev/null
  t2=$(copy_cluster_usage target) vwal=$(copy_wal_mb "$lsn1")
  # shellcheck disable=SC2086 # "ticks bytes" pairs
  COPY_USAGE+=("$who|$round|$(echo $s0 $s1 $t0 $t1 $t2 | awk -v hz="$hz" -v wal="$wal" -v vwal="$vwal" '{
    printf "%.1f|%.1f|%s|%.0f|%s|%.0f", ($3 - $1) / hz, ($7 - $5) / hz, wal, ($8 - $6) / 1048576, vwal, ($10 - $8) / 1048576 }')")
}

copy_fn() {
  case $1 in
    pgrelocate | pgcopydb) echo "copy_$1" ;;
    dump+restore) echo copy_dump_restore ;;
    *) cl_die "unknown copy contender '$1' (known: pgrelocate, dump+restore, pgcopydb)" ;;
  esac
}

bench_check_copy() {
  local who
  for who in $BENCH_CONTENDERS; do copy_fn "$who" >/dev/null; done
}

bench_section_copy() {
  local who fn log t0 t1 rc round s0 g0 lsn0
  bench_log "== section copy: ${BENCH_CONTENDERS// /, } with $BENCH_JOBS jobs, source $((BENCH_SRC_BYTES / 1048576)) MB," \
    "$BENCH_REPEAT round(s)"
  for ((round = 1; round <= BENCH_REPEAT; round++)); do
    for who in $BENCH_CONTENDERS; do
      fn=$(copy_fn "$who")
      log="$BENCH_LOGDIR/copy-$who.log"
      [ "$round" -gt 1 ] || : >"$log"
      echo "=== round $round" >>"$log"
      bench_reset_target
      bench_log "$who: copying (round $round) ..."
      s0=$(copy_cluster_usage source) g0=$(copy_cluster_usage target) lsn0=$(copy_wal_lsn)
      t0=$(bench_now)
      rc=0
      "$fn" "$log" || rc=$?
      t1=$(bench_now)
      bench_record copy "$who" "$rc" "$t0" "$t1" "$("${fn}_rss")" "$log"
      copy_usage_record "$who" "$round" "$s0" "$g0" "$lsn0"
      if declare -F "${fn}_after" >/dev/null; then "${fn}_after"; fi
    done
  done
}

bench_report_copy() {
  bench_report copy pgrelocate
  echo "server work per run (CPU of each cluster's processes; target WAL and bytes written, checkpoint" \
    "included; then a VACUUM of the copy: the writes left for later):"
  printf '%-14s %5s %9s %9s %9s %11s %10s %12s\n' contender round "src CPU s" "tgt CPU s" "WAL MB" "written MB" \
    "vac WAL MB" "vac written MB"
  local r
  for r in "${COPY_USAGE[@]}"; do
    echo "$r" | awk -F'|' '{ printf "%-14s %5s %9s %9s %9s %11s %10s %12s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  done
}

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
  local who fn log t0 t1 rc round
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
      t0=$(bench_now)
      rc=0
      "$fn" "$log" || rc=$?
      t1=$(bench_now)
      bench_record copy "$who" "$rc" "$t0" "$t1" "$("${fn}_rss")" "$log"
      if declare -F "${fn}_after" >/dev/null; then "${fn}_after"; fi
    done
  done
}

bench_report_copy() { bench_report copy pgrelocate; }

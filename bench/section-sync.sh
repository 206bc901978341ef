# shellcheck shell=bash
# bench/section-sync.sh: `pgrelocate start` under a rate-limited pgbench load,
# tables synced at their own points (the default) against --one-snapshot.
#
# For each mode, BENCH_REPEAT rounds: a fresh target, pgbench -R
# BENCH_SYNC_TPS on the source, then `start` is timed until its follow phase
# (every table copied, indexes, sequences and statistics in place: "copy
# done") and until the target's replication origin first moves ("first
# applied change"). Every 0.2 s the source is sampled for the backend_xmin
# of pgrelocate's sessions and walsenders and the xmin of its slots; each
# distinct xmin's span between its first and last sample is how long that
# snapshot held the source's VACUUM back ("longest hold"). Reported as
# medians. Runs after the copy section (it writes to the source).

BENCH_SYNC_TPS=${BENCH_SYNC_TPS:-200}
SYNC_RUNS=() # "mode|round|copy done s|first applied s|longest hold s|distinct snapshots"

sync_q() { cl_query "$1" "$BENCH_DB" "$2"; }

# One line per pgrelocate session, walsender or slot holding back the
# source's xmin: "xmin" (the xid as text).
SYNC_HOLD_SQL="select backend_xmin::text from pg_stat_activity
  where backend_xmin is not null and (application_name like 'pgrelocate%' or backend_type = 'walsender')
  union select xmin::text from pg_replication_slots where xmin is not null"

sync_round() {
  local mode=$1 round=$2 log="$BENCH_LOGDIR/sync-$1.log" src tgt pid load t0 now first='' done='' samples
  local args=(start --source "$(cl_uri source "$BENCH_DB")" --target "$(cl_uri target "$BENCH_DB")"
    --jobs "$BENCH_JOBS" --replica-identity-full --progress plain)
  [ "$mode" = one-snapshot ] && args+=(--one-snapshot)
  src=$(cl_uri source "$BENCH_DB") tgt=$(cl_uri target "$BENCH_DB")
  bench_reset_target
  samples="$CL_DIR/sync-samples"
  : >"$samples"
  cl_run "$CL_PGBIN/pgbench" -h 127.0.0.1 -p "$(cl_port source)" -U postgres -n -c 2 -j 2 -N \
    -R "$BENCH_SYNC_TPS" -T 3600 "$BENCH_DB" >"$CL_DIR/sync-pgbench.log" 2>&1 &
  load=$!
  sleep 1
  bench_log "sync: $mode, round $round/$BENCH_REPEAT: start under pgbench -R $BENCH_SYNC_TPS ..."
  t0=$(bench_now)
  cl_run "$CL_DIR/pgrelocate" "${args[@]}" >>"$log" 2>&1 &
  pid=$!
  while [ -z "$done" ]; do
    kill -0 "$pid" 2>/dev/null || { bench_log "pgrelocate start ($mode) ended: see $log"; break; }
    now=$(bench_now)
    sync_q source "$SYNC_HOLD_SQL" 2>/dev/null | sed "s/^/$now /" >>"$samples"
    if [ -z "$first" ] && [ "$(sync_q target "select coalesce((select pg_replication_origin_progress(replication_name, false) > '0/0'
          from pgrelocate.migration where replication_name is not null), false)" 2>/dev/null)" = t ]; then
      first=$(bench_secs "$t0" "$now")
    fi
    [ "$(sync_q target "select phase from pgrelocate.migration" 2>/dev/null)" = follow ] && done=$(bench_secs "$t0" "$now")
    sleep 0.2
  done
  # after the copy: the origin moves at the first change applied in the follow phase
  while [ -z "$first" ] && kill -0 "$pid" 2>/dev/null; do
    now=$(bench_now)
    [ "$(sync_q target "select coalesce(pg_replication_origin_progress((select replication_name from pgrelocate.migration), false) > '0/0', false)" 2>/dev/null)" = t ] &&
      first=$(bench_secs "$t0" "$now")
    [ "$(bench_secs "$t0" "$now" | cut -d. -f1)" -gt 600 ] && break
    sleep 0.2
  done
  pkill -INT -f "^$CL_DIR/pgrelocate start" || true
  wait "$pid" || true
  kill "$load" 2>/dev/null || true
  pkill -INT -f "pgbench .*-R $BENCH_SYNC_TPS" || true
  wait "$load" 2>/dev/null || true
  cl_run "$CL_DIR/pgrelocate" cleanup --source "$src" --target "$tgt" >>"$log" 2>&1 || true
  SYNC_RUNS+=("$mode|$round|${done:--}|${first:--}|$(awk '
    { if (!($2 in a)) a[$2] = $1; b[$2] = $1 }
    END { m = 0; n = 0; for (x in a) { n++; if (b[x] - a[x] > m) m = b[x] - a[x] } printf "%.1f|%d", m, n }' "$samples")")
}

bench_section_sync() {
  local mode round
  cl_on_exit "pkill -KILL -f '^$CL_DIR/pgrelocate '"
  for mode in per-table one-snapshot; do
    : >"$BENCH_LOGDIR/sync-$mode.log"
    for ((round = 1; round <= BENCH_REPEAT; round++)); do sync_round "$mode" "$round"; done
  done
}

sync_median() {
  printf '%s\n' "${SYNC_RUNS[@]}" | awk -F'|' -v m="$1" -v f="$2" '$1 == m { print $f }' | catchup_median
}

bench_report_sync() {
  local mode
  echo
  echo "== sync (start under pgbench -N -R $BENCH_SYNC_TPS; medians of $BENCH_REPEAT round(s); seconds from start)"
  printf '%-13s %10s %15s %13s %10s  %s\n' mode 'copy done' 'first applied' 'longest hold' snapshots \
    'rounds (copy done/first applied/hold)'
  for mode in per-table one-snapshot; do
    printf '%-13s %10s %15s %13s %10s  %s\n' "$mode" "$(sync_median "$mode" 3)" "$(sync_median "$mode" 4)" \
      "$(sync_median "$mode" 5)" "$(sync_median "$mode" 6)" \
      "$(printf '%s\n' "${SYNC_RUNS[@]}" | awk -F'|' -v m="$mode" '$1 == m { printf "%s/%s/%s ", $3, $4, $5 }')"
  done
}

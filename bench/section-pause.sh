# shellcheck shell=bash
# bench/section-pause.sh: the pause of a cutover and of a rollback as clients
# see it.  pgbench (TPC-B, BENCH_PAUSE_CLIENTS clients, every transaction
# logged with --log) runs through a real pgbouncer for BENCH_PAUSE_SECONDS
# while `pgrelocate start` follows; a third of the way in, `pgrelocate
# cutover` switches pgbouncer to the target (then, in a second run,
# `pgrelocate rollback` switches it back).  Reported per switch: the pause
# pgrelocate measured (PAUSE to RESUME), the longest transaction latency
# of the run and of the transactions that started within 1 s of the switch,
# pgbench's TPS and failed transactions.  Target: longest < 1 s at 500+ TPS,
# zero failures.  Runs after the copy section (it writes to the source).
# Needs scripts/bouncer-lib.sh sourced.

BENCH_PAUSE_SECONDS=${BENCH_PAUSE_SECONDS:-15}
BENCH_PAUSE_CLIENTS=${BENCH_PAUSE_CLIENTS:-8}
PAUSE_RESULTS=() # "switch|pause_ms|longest_ms|longest_near_ms|tps|failed|processed|exit"

pause_q() { cl_query "$1" "$BENCH_DB" "$2"; }

# pause_run SWITCH LOG: pgbench through pgbouncer, SWITCH (cutover or rollback)
# a third of the way in; record the result.
pause_run() {
  local what=$1 log=$2 dir="$CL_DIR/pause-$1" src tgt pid t_switch t_end rc=0 out pause_ms stats
  src=$(cl_uri source "$BENCH_DB") tgt=$(cl_uri target "$BENCH_DB")
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown "$CL_USER" "$dir"
  bench_log "pause: pgbench -c $BENCH_PAUSE_CLIENTS through pgbouncer for ${BENCH_PAUSE_SECONDS}s, $what after $((BENCH_PAUSE_SECONDS / 3))s ..."
  cl_run "$CL_PGBIN/pgbench" -n -c "$BENCH_PAUSE_CLIENTS" -j 2 -T "$BENCH_PAUSE_SECONDS" \
    --log --log-prefix="$dir/tx" -h 127.0.0.1 -p "$BN_PORT" -U postgres "$BENCH_DB" >"$dir/pgbench.out" 2>&1 &
  pid=$!
  sleep $((BENCH_PAUSE_SECONDS / 3))
  t_switch=$(bench_now)
  # shellcheck disable=SC2046
  out=$(cl_run "$CL_DIR/pgrelocate" "$what" --source "$src" --target "$tgt" \
    $(bn_cutover_args "$BENCH_DB") --max-pause 5s 2>>"$log") || rc=$?
  t_end=$(bench_now)
  echo "$out" >>"$log"
  wait "$pid" || true
  cat "$dir/pgbench.out" >>"$log"
  pause_ms=$(echo "$out" | sed -n 's/.*writes paused for \([0-9]*\) ms.*/\1/p')
  # --log: client_id transaction_no latency_us script_no end_epoch end_us
  stats=$(cat "$dir"/tx.* | awk -v a="$t_switch" -v b="$t_end" '
    { lat = $3 / 1000; start = $5 + $6 / 1e6 - $3 / 1e6
      if (lat > all) all = lat
      if (start >= a - 1 && start <= b + 1 && lat > near) near = lat }
    END { printf "%.0f %.0f", all, near }')
  PAUSE_RESULTS+=("$what|${pause_ms:--}|${stats% *}|${stats#* }|$(awk '/^tps/ { printf "%.0f", $3 }' "$dir/pgbench.out")|$(awk '/number of failed transactions/ { print $5 }' "$dir/pgbench.out")|$(awk '/actually processed/ { print $NF }' "$dir/pgbench.out")|$rc")
  bench_log "pause: $what exit $rc, pgrelocate measured ${pause_ms:-?} ms; longest transaction ${stats% *} ms (${stats#* } ms near the switch)"
}

bench_section_pause() {
  local log="$BENCH_LOGDIR/pause-pgrelocate.log" src tgt pid
  src=$(cl_uri source "$BENCH_DB") tgt=$(cl_uri target "$BENCH_DB")
  cl_on_exit "pkill -KILL -f '^$CL_DIR/pgrelocate '"
  : >"$log"
  bench_log "== section pause: cutover and rollback through pgbouncer under pgbench"
  bench_reset_target
  bn_start source "$BENCH_DB"
  cl_run "$CL_DIR/pgrelocate" start --source "$src" --target "$tgt" --jobs "$BENCH_JOBS" \
    --replica-identity-full --progress plain >>"$log" 2>&1 &
  pid=$!
  until [ "$(pause_q target "select phase from pgrelocate.migration" 2>/dev/null)" = follow ]; do
    kill -0 "$pid" 2>/dev/null || { bench_log "pgrelocate start failed: see $log"; return 1; }
    sleep 0.5
  done
  pause_run cutover "$log"
  pause_run rollback "$log"
  wait "$pid" || true # start ends by itself after the rollback
  cl_run "$CL_DIR/pgrelocate" cleanup --source "$src" --target "$tgt" >>"$log" 2>&1 || true
}

bench_report_pause() {
  local r
  echo
  echo "== pause (pgbench TPC-B -c $BENCH_PAUSE_CLIENTS through pgbouncer for ${BENCH_PAUSE_SECONDS}s; switch after $((BENCH_PAUSE_SECONDS / 3))s)"
  printf '%-9s %12s %14s %16s %7s %7s %10s %5s\n' switch 'pause (ms)' 'longest (ms)' 'near switch (ms)' tps failed committed exit
  for r in "${PAUSE_RESULTS[@]}"; do
    IFS='|' read -r what p all near tps failed n rc <<<"$r"
    printf '%-9s %12s %14s %16s %7s %7s %10s %5s\n' "$what" "$p" "$all" "$near" "$tps" "${failed:--}" "$n" "$rc"
  done
  echo "pause: what pgrelocate measured from PAUSE to RESUME; longest: the longest pgbench transaction"
  echo "(it includes waiting in pgbouncer's queue); target: longest < 1000 ms at 500+ tps, 0 failed"
}

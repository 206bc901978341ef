# shellcheck shell=bash
# bench/section-catchup.sh: change replication, pgrelocate against native
# logical replication (CREATE SUBSCRIPTION), on the same data and load.
#
# Backlog catch-up: the consumer is stopped, `pgbench -N -c 4` writes to the
# source for BENCH_CATCHUP_SECONDS, then the consumer is started and timed
# until the target holds every pgbench_history row of the source.  Reported:
# transactions/s and WAL MB/s applied.  Then steady-state lag: a
# rate-limited pgbench (BENCH_LAG_TPS, default 500) runs while the consumer
# follows; the source's pg_stat_replication.replay_lag of its walsender is
# sampled every 0.5 s: p50 and p99.  Runs after the copy section (it writes
# to the source).

BENCH_CATCHUP_SECONDS=${BENCH_CATCHUP_SECONDS:-30}
BENCH_LAG_SECONDS=${BENCH_LAG_SECONDS:-20}
BENCH_LAG_TPS=${BENCH_LAG_TPS:-500}
CATCHUP_RESULTS=() # "contender|txns|seconds|tps|wal_mb_s|p50|p99"
CATCHUP_CPU=()     # "contender|source µs|target µs|tool µs|machine busy %"

catchup_q() { cl_query "$1" "$BENCH_DB" "$2"; }

# SIGINT to the pgrelocate started in the background (pid: its subshell).
# runuser, between us and it, ignores SIGINT itself; signal the process by
# its command line, which names this bench's own directory.
catchup_stop() {
  pkill -INT -f "^$CL_DIR/pgrelocate start" || true
  wait "$1" || true
}
catchup_rows() { catchup_q "$1" "select count(*) from pgbench_history"; }
catchup_mark() { catchup_q "$1" "select trim(filler) from pgbench_branches where bid = 1"; }

# Wait until the target holds the backlog's last transaction (the marker
# catchup_backlog writes after pgbench); echo seconds.  One psql session,
# kept open, is asked for a one-row lookup every 20 ms, and the loop forks
# nothing (bash's read -t is the sleep): a psql started per poll cost both
# contenders a quarter of a core in process start-ups on this machine, and
# count(*) of the history table took the target's CPU while it applied.
catchup_wait_rows() {
  local want=$1 t0=$2 deadline=$((SECONDS + BENCH_CATCHUP_SECONDS * 20 + 120)) line='' in out ppid
  while [ "$line" != "$CATCHUP_MARK" ] && [ "$SECONDS" -lt "$deadline" ]; do
    coproc CATCHUP_POLL { cl_psql target -d "$BENCH_DB" -At 2>&1; }
    in=${CATCHUP_POLL[1]} out=${CATCHUP_POLL[0]} ppid=$CATCHUP_POLL_PID
    while [ "$line" != "$CATCHUP_MARK" ] && [ "$SECONDS" -lt "$deadline" ]; do
      read -r -t 0.02 -u "$out" _ || true
      echo "select trim(filler) from pgbench_branches where bid = 1;" >&"$in" || break
      read -r -u "$out" line || break
    done
    eval "exec $in>&-"
    wait "$ppid" 2>/dev/null || true
    [ "$line" = "$CATCHUP_MARK" ] || { echo "catchup: the poll session ended ($line); again" >&2; sleep 0.2; }
  done
  [ "$line" = "$CATCHUP_MARK" ] || { echo "timeout"; return 1; }
  [ "$(catchup_rows target)" -ge "$want" ] || { echo "incomplete"; return 1; }
  bench_secs "$t0" "$(bench_now)"
}

catchup_backlog() {
  local lsn0 lsn1 out
  # each backlog starts after a checkpoint: both contenders decode the same
  # share of full-page images (the first would otherwise get them all)
  catchup_q source "checkpoint" >/dev/null
  lsn0=$(catchup_q source "select pg_current_wal_lsn()")
  out=$(cl_run "$CL_PGBIN/pgbench" -h 127.0.0.1 -p "$(cl_port source)" -U postgres -n -N -c 4 -j 2 \
    -T "$BENCH_CATCHUP_SECONDS" "$BENCH_DB" 2>&1)
  CATCHUP_MARK="backlog-$RANDOM$RANDOM"
  catchup_q source "update pgbench_branches set filler = '$CATCHUP_MARK' where bid = 1" >/dev/null
  lsn1=$(catchup_q source "select pg_current_wal_lsn()")
  CATCHUP_TXNS=$(echo "$out" | awk '/number of transactions actually processed/ { print $NF }')
  CATCHUP_TXNS=${CATCHUP_TXNS%%/*}
  CATCHUP_WAL=$(catchup_q source "select pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
}

# Sample replay_lag of the walsender named app for BENCH_LAG_SECONDS under a
# rate-limited load; echo "p50 p99" in seconds.
catchup_lag() {
  local app=$1 samples="$CL_DIR/lag.samples" pid
  : >"$samples"
  cl_run "$CL_PGBIN/pgbench" -h 127.0.0.1 -p "$(cl_port source)" -U postgres -n -N -c 4 -j 2 \
    -R "$BENCH_LAG_TPS" -T "$BENCH_LAG_SECONDS" "$BENCH_DB" >/dev/null 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    catchup_q source "select coalesce(extract(epoch from replay_lag), 0) from pg_stat_replication
                      where application_name = '$app'" >>"$samples"
    sleep 0.5
  done
  wait "$pid" || true
  sort -g "$samples" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- -"; exit }
    i50 = int((NR + 1) * 0.50); if (i50 < 1) i50 = 1
    i99 = int(NR * 0.99); if (i99 < 1) i99 = NR
    printf "%.3f %.3f\n", v[i50], v[i99] }'
}

# CPU time (clock ticks, user + system) of the given processes that are
# alive now.  comm, field 2 of /proc/PID/stat, may hold spaces: cut at ')'.
catchup_ticks() {
  local pid sum=0 t
  for pid in "$@"; do
    t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
catchup_cluster_ticks() {
  local pm
  pm=$(head -n 1 "$CL_DIR/$1/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  # shellcheck disable=SC2046 # one pid a word
  catchup_ticks "$pm" $(pgrep -P "$pm")
}
# "source target tool busy total": ticks of each side's processes (the
# source cluster, the target cluster, pgrelocate) and of the machine (busy,
# all), for the CPU cost per applied transaction.  Processes that end inside
# the window are not counted: none of the contenders' does.
catchup_cpu() {
  # shellcheck disable=SC2046
  echo "$(catchup_cluster_ticks source) $(catchup_cluster_ticks target)" \
    "$(catchup_ticks $(pgrep -f "^$CL_DIR/pgrelocate start"))" \
    "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)"
}
catchup_cpu_record() {
  local who=$1 hz
  hz=$(getconf CLK_TCK)
  # shellcheck disable=SC2086 # "before after", ten numbers
  CATCHUP_CPU+=("$who|$(echo $2 $3 | awk -v n="$CATCHUP_TXNS" -v hz="$hz" '{
    us = 1e6 / hz / (n > 0 ? n : 1)
    printf "%.1f|%.1f|%.1f|%.0f", ($6 - $1) * us, ($7 - $2) * us, ($8 - $3) * us,
      ($10 > $5 ? 100 * ($9 - $4) / ($10 - $5) : 0) }')")
}

catchup_record() {
  local who=$1 secs=$2 lag=$3 tps=- wal=-
  # secs is "timeout" or "incomplete" when the run did not catch up
  [[ $secs =~ ^[0-9.]+$ ]] && tps=$(awk -v n="$CATCHUP_TXNS" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  [[ $secs =~ ^[0-9.]+$ ]] && wal=$(awk -v b="$CATCHUP_WAL" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0 ? b / 1048576 / s : 0) }')
  CATCHUP_RESULTS+=("$who|$CATCHUP_TXNS|$secs|$tps|$wal|${lag% *}|${lag#* }")
  bench_log "$who: $CATCHUP_TXNS transactions in $secs s = $tps tps ($wal MB/s of WAL); lag p50/p99 ${lag% *}/${lag#* } s"
}

catchup_pgrelocate() {
  local log="$BENCH_LOGDIR/catchup-pgrelocate.log" src tgt pid want t0 secs lag cpu0
  src=$(cl_uri source "$BENCH_DB") tgt=$(cl_uri target "$BENCH_DB")
  : >"$log"
  bench_reset_target
  bench_log "pgrelocate: start (copy, then follow) ..."
  cl_run "$CL_DIR/pgrelocate" start --source "$src" --target "$tgt" --jobs "$BENCH_JOBS" \
    --replica-identity-full --progress plain >>"$log" 2>&1 &
  pid=$!
  until [ "$(catchup_q target "select phase from pgrelocate.migration" 2>/dev/null)" = follow ]; do
    kill -0 "$pid" 2>/dev/null || { bench_log "pgrelocate start failed: see $log"; return 1; }
    sleep 0.5
  done
  catchup_stop "$pid"
  bench_log "pgrelocate: stopped; building a backlog of ${BENCH_CATCHUP_SECONDS}s of pgbench -N -c 4 ..."
  catchup_backlog
  want=$(catchup_rows source)
  cpu0=$(catchup_cpu)
  t0=$(bench_now)
  cl_run "$CL_DIR/pgrelocate" start --source "$src" --target "$tgt" >>"$log" 2>&1 &
  pid=$!
  secs=$(catchup_wait_rows "$want" "$t0") || true # "timeout" or "incomplete" then
  catchup_cpu_record pgrelocate "$cpu0" "$(catchup_cpu)"
  lag=$(catchup_lag "pgrelocate stream")
  # caught up before it stops: the native run starts from this target and
  # needs every row of the lag phase on it
  CATCHUP_MARK="lag-$RANDOM$RANDOM"
  catchup_q source "update pgbench_branches set filler = '$CATCHUP_MARK' where bid = 1" >/dev/null
  catchup_wait_rows 0 "$(bench_now)" >/dev/null || bench_log "pgrelocate: did not catch up after the lag phase"
  catchup_stop "$pid"
  catchup_record pgrelocate "$secs" "$lag"
  cl_run "$CL_DIR/pgrelocate" cleanup --source "$src" --target "$tgt" >>"$log" 2>&1
}

# Native: the target already equals the source (pgrelocate's run just ended
# in sync); a subscription without initial copy, disabled while the backlog
# builds, then enabled and timed the same way.
catchup_native() {
  local log="$BENCH_LOGDIR/catchup-native.log" want t0 secs lag tables cpu0
  : >"$log"
  tables=$(catchup_q source "select string_agg(format('%I.%I', schemaname, tablename), ', ')
                             from pg_tables where schemaname = 'public'")
  catchup_q source "create publication bench_pub for table $tables" >>"$log" 2>&1
  catchup_q target "create subscription bench_sub connection '$(cl_uri source "$BENCH_DB")'
                    publication bench_pub with (copy_data = false)" >>"$log" 2>&1
  catchup_q target "alter subscription bench_sub disable" >>"$log" 2>&1
  bench_log "native: subscription disabled; building the same backlog ..."
  catchup_backlog
  want=$(catchup_rows source)
  cpu0=$(catchup_cpu)
  t0=$(bench_now)
  catchup_q target "alter subscription bench_sub enable" >>"$log" 2>&1
  secs=$(catchup_wait_rows "$want" "$t0") || true # "timeout" or "incomplete" then
  catchup_cpu_record native "$cpu0" "$(catchup_cpu)"
  lag=$(catchup_lag bench_sub)
  catchup_record native "$secs" "$lag"
  catchup_q target "drop subscription bench_sub" >>"$log" 2>&1
  catchup_q source "drop publication bench_pub" >>"$log" 2>&1
}

bench_section_catchup() {
  # whatever happens, no pgrelocate of ours outlives the bench's clusters
  cl_on_exit "pkill -KILL -f '^$CL_DIR/pgrelocate '"
  bench_log "== section catchup: pgrelocate start vs CREATE SUBSCRIPTION, backlog of ${BENCH_CATCHUP_SECONDS}s"
  catchup_pgrelocate
  catchup_native
}

bench_report_catchup() {
  local r ours="" theirs=""
  echo
  echo "== catchup (backlog of ${BENCH_CATCHUP_SECONDS}s of pgbench -N -c 4; lag under ${BENCH_LAG_TPS} tps for ${BENCH_LAG_SECONDS}s)"
  printf '%-12s %10s %9s %9s %10s %9s %9s\n' contender transactions seconds 'txn/s' 'WAL MB/s' 'lag p50' 'lag p99'
  for r in "${CATCHUP_RESULTS[@]}"; do
    IFS='|' read -r who n s tps wal p50 p99 <<<"$r"
    printf '%-12s %10s %9s %9s %10s %8ss %8ss\n' "$who" "$n" "$s" "$tps" "$wal" "$p50" "$p99"
    [ "$who" = pgrelocate ] && ours=$tps
    [ "$who" = native ] && theirs=$tps
  done
  [[ $ours =~ ^[0-9]+$ && $theirs =~ ^[0-9]+$ && $theirs != 0 ]] &&
    awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "pgrelocate/native apply rate = %.2fx\n", a / b }'
  echo "CPU per applied transaction, in µs, while catching up (the machine has $(nproc) cores):"
  printf '%-12s %9s %9s %9s %9s %13s\n' contender source target tool total 'machine busy'
  for r in "${CATCHUP_CPU[@]}"; do
    IFS='|' read -r who a b c busy <<<"$r"
    printf '%-12s %9s %9s %9s %9s %12s%%\n' "$who" "$a" "$b" "$c" \
      "$(awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { printf "%.1f", a + b + c }')" "$busy"
  done
  return 0
}

# shellcheck shell=bash
# bench/section-catchup.sh: change replication, pgrelocate against native
# logical replication (CREATE SUBSCRIPTION), on the same data and load.
#
# For each workload of BENCH_CATCHUP_WORKLOADS ("tpcb:50 simple:10": pgbench's
# TPC-B-like script at scale 50, then its -N script at scale 10; the pgbench
# tables are initialized again when the scale differs), each contender runs
# BENCH_REPEAT rounds of a backlog catch-up: the consumer is stopped, pgbench
# -c 4 writes to the source for BENCH_CATCHUP_SECONDS, then the consumer is
# started and timed until the target holds the backlog's last transaction.
# Reported, as medians of the rounds: transactions/s, WAL MB/s applied, and
# the CPU time (utime + stime of /proc/PID/stat) per transaction of each
# process that does the work: the source walsender, the target backend(s)
# (pgrelocate's sessions; native's apply worker) and pgrelocate itself, all
# started for the round, plus both clusters in all and how busy the machine
# was.  After the last round, steady-state lag: a rate-limited pgbench
# (BENCH_LAG_TPS, default 500) runs while the consumer follows; the replay_lag
# of its walsender is sampled every 0.5 s: p50 and p99.  Runs after the copy
# section (it writes to the source).

BENCH_CATCHUP_SECONDS=${BENCH_CATCHUP_SECONDS:-30}
BENCH_CATCHUP_WORKLOADS=${BENCH_CATCHUP_WORKLOADS:-tpcb:50 simple:10}
BENCH_CATCHUP_WORKLOADS=${BENCH_CATCHUP_WORKLOADS//,/ }
BENCH_LAG_SECONDS=${BENCH_LAG_SECONDS:-20}
BENCH_LAG_TPS=${BENCH_LAG_TPS:-500}
CATCHUP_RUNS=() # "workload|contender|txns|seconds|tps|wal_mb_s|walsender|applier|tool|source|target|busy", one a round
CATCHUP_LAGS=() # "workload|contender|p50|p99"
CATCHUP_WORKLOAD=tpcb # the one running: tpcb or simple
CATCHUP_SCALE=0

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

# pgbench's options for the running workload: -N skips the updates of
# tellers and branches (the "simple update" script)
catchup_pgbench_args() {
  local a=(-h 127.0.0.1 -p "$(cl_port source)" -U postgres -n -c 4 -j 2)
  [ "$CATCHUP_WORKLOAD" = simple ] && a+=(-N)
  echo "${a[@]}"
}

catchup_backlog() {
  local lsn0 lsn1 out
  # each backlog starts after a checkpoint: both contenders decode the same
  # share of full-page images (the first would otherwise get them all)
  catchup_q source "checkpoint" >/dev/null
  lsn0=$(catchup_q source "select pg_current_wal_lsn()")
  # shellcheck disable=SC2046 # options, one a word
  out=$(cl_run "$CL_PGBIN/pgbench" $(catchup_pgbench_args) -T "$BENCH_CATCHUP_SECONDS" "$BENCH_DB" 2>&1)
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
  # shellcheck disable=SC2046 # options, one a word
  cl_run "$CL_PGBIN/pgbench" $(catchup_pgbench_args) -R "$BENCH_LAG_TPS" -T "$BENCH_LAG_SECONDS" \
    "$BENCH_DB" >/dev/null 2>&1 &
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

# CPU time (clock ticks, user + system, all threads) of the given processes
# that are alive now.  comm, field 2 of /proc/PID/stat, may hold spaces: cut
# at ')'.
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
# "source target busy total": ticks of each cluster's processes and of the
# machine (busy, all), taken before and after a catch-up.  A process that
# ends inside the window is not counted: none of the contenders' does.
catchup_cpu() {
  echo "$(catchup_cluster_ticks source) $(catchup_cluster_ticks target)" \
    "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)"
}
# "walsender applier tool": ticks of the processes a contender started for
# this round (all of their CPU is the round's): its walsender on the source
# (application_name app), its backends on the target (sql picks their pids),
# the pgrelocate process.  Read once caught up, while they all still run.
catchup_proc_cpu() {
  local app=$1 sql=$2
  # shellcheck disable=SC2046 # one pid a word
  echo "$(catchup_ticks $(catchup_q source "select pid from pg_stat_replication where application_name = '$app'"))" \
    "$(catchup_ticks $(catchup_q target "$sql"))" \
    "$(catchup_ticks $(pgrep -f "^$CL_DIR/pgrelocate start"))"
}

# One round's result: "seconds" is a number, or "timeout" / "incomplete"
# when the round did not catch up (no rate then).  cpu0/cpu1: catchup_cpu
# before and after; procs: catchup_proc_cpu.
catchup_record() {
  local who=$1 secs=$2 cpu0=$3 cpu1=$4 procs=$5 tps=- wal=- hz
  hz=$(getconf CLK_TCK)
  [[ $secs =~ ^[0-9.]+$ ]] && tps=$(awk -v n="$CATCHUP_TXNS" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  [[ $secs =~ ^[0-9.]+$ ]] && wal=$(awk -v b="$CATCHUP_WAL" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0 ? b / 1048576 / s : 0) }')
  # shellcheck disable=SC2086 # eleven numbers
  CATCHUP_RUNS+=("$CATCHUP_WORKLOAD:$CATCHUP_SCALE|$who|$CATCHUP_TXNS|$secs|$tps|$wal|$(echo $procs $cpu0 $cpu1 |
    awk -v n="$CATCHUP_TXNS" -v hz="$hz" '{
      us = 1e6 / hz / (n > 0 ? n : 1)
      printf "%.1f|%.1f|%.1f|%.1f|%.1f|%.0f", $1 * us, $2 * us, $3 * us, ($8 - $4) * us, ($9 - $5) * us,
        ($11 > $7 ? 100 * ($10 - $6) / ($11 - $7) : 0) }')")
  bench_log "$who ($CATCHUP_WORKLOAD, scale $CATCHUP_SCALE): $CATCHUP_TXNS transactions in $secs s = $tps tps" \
    "($wal MB/s of WAL); µs/tx walsender|applier|tool|source|target|busy%: ${CATCHUP_RUNS[-1]#*|*|*|*|*|*|}"
}

# The pgbench tables at the workload's scale (pgbench -i again when it
# differs: the tables are dropped and created; bench_docs stays).
catchup_init_scale() {
  local scale=$1
  [ "$(catchup_q source "select count(*) from pgbench_branches")" = "$scale" ] && return 0
  bench_log "catchup: pgbench -i -s $scale ..."
  cl_run "$CL_PGBIN/pgbench" -i -q -s "$scale" "$(cl_uri source "$BENCH_DB")" >"$CL_DIR/pgbench-init.log" 2>&1 || {
    tail -n 20 "$CL_DIR/pgbench-init.log" >&2
    cl_die "pgbench -i -s $scale failed"
  }
  cl_psql source -d "$BENCH_DB" -c "vacuum analyze" -c checkpoint
}

catchup_pgrelocate() {
  local log="$BENCH_LOGDIR/catchup-pgrelocate.log" src tgt pid want t0 secs lag cpu0 procs round
  local tgt_sql="select pid from pg_stat_activity where application_name like 'pgrelocate%'"
  src=$(cl_uri source "$BENCH_DB") tgt=$(cl_uri target "$BENCH_DB")
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
  for ((round = 1; round <= BENCH_REPEAT; round++)); do
    bench_log "pgrelocate: stopped; round $round/$BENCH_REPEAT: a backlog of ${BENCH_CATCHUP_SECONDS}s of pgbench $CATCHUP_WORKLOAD ..."
    catchup_backlog
    want=$(catchup_rows source)
    cpu0=$(catchup_cpu)
    t0=$(bench_now)
    cl_run "$CL_DIR/pgrelocate" start --source "$src" --target "$tgt" >>"$log" 2>&1 &
    pid=$!
    secs=$(catchup_wait_rows "$want" "$t0") || true # "timeout" or "incomplete" then
    procs=$(catchup_proc_cpu "pgrelocate stream" "$tgt_sql")
    catchup_record pgrelocate "$secs" "$cpu0" "$(catchup_cpu)" "$procs"
    if [ "$round" = "$BENCH_REPEAT" ]; then
      lag=$(catchup_lag "pgrelocate stream")
      CATCHUP_LAGS+=("$CATCHUP_WORKLOAD:$CATCHUP_SCALE|pgrelocate|${lag% *}|${lag#* }")
      # caught up before it stops: the native run starts from this target
      # and needs every row of the lag phase on it
      CATCHUP_MARK="lag-$RANDOM$RANDOM"
      catchup_q source "update pgbench_branches set filler = '$CATCHUP_MARK' where bid = 1" >/dev/null
      catchup_wait_rows 0 "$(bench_now)" >/dev/null || bench_log "pgrelocate: did not catch up after the lag phase"
    fi
    catchup_stop "$pid"
  done
  cl_run "$CL_DIR/pgrelocate" cleanup --source "$src" --target "$tgt" >>"$log" 2>&1
}

# Native: the target already equals the source (pgrelocate's run just ended
# in sync); a subscription without initial copy, disabled while each backlog
# builds, then enabled and timed the same way.
catchup_native() {
  local log="$BENCH_LOGDIR/catchup-native.log" want t0 secs lag tables cpu0 procs round
  local tgt_sql="select pid from pg_stat_activity where backend_type = 'logical replication worker'"
  tables=$(catchup_q source "select string_agg(format('%I.%I', schemaname, tablename), ', ')
                             from pg_tables where schemaname = 'public'")
  catchup_q source "create publication bench_pub for table $tables" >>"$log" 2>&1
  catchup_q target "create subscription bench_sub connection '$(cl_uri source "$BENCH_DB")'
                    publication bench_pub with (copy_data = false, enabled = false)" >>"$log" 2>&1
  for ((round = 1; round <= BENCH_REPEAT; round++)); do
    bench_log "native: subscription disabled; round $round/$BENCH_REPEAT: the same backlog ..."
    catchup_backlog
    want=$(catchup_rows source)
    cpu0=$(catchup_cpu)
    t0=$(bench_now)
    catchup_q target "alter subscription bench_sub enable" >>"$log" 2>&1
    secs=$(catchup_wait_rows "$want" "$t0") || true # "timeout" or "incomplete" then
    procs=$(catchup_proc_cpu bench_sub "$tgt_sql")
    catchup_record native "$secs" "$cpu0" "$(catchup_cpu)" "$procs"
    if [ "$round" = "$BENCH_REPEAT" ]; then
      lag=$(catchup_lag bench_sub)
      CATCHUP_LAGS+=("$CATCHUP_WORKLOAD:$CATCHUP_SCALE|native|${lag% *}|${lag#* }")
    fi
    catchup_q target "alter subscription bench_sub disable" >>"$log" 2>&1
    # the next round's backlog starts once the walsender is gone
    while [ "$(catchup_q source "select count(*) from pg_stat_replication where application_name = 'bench_sub'")" != 0 ]; do
      sleep 0.2
    done
  done
  catchup_q target "drop subscription bench_sub" >>"$log" 2>&1
  catchup_q source "drop publication bench_pub" >>"$log" 2>&1
}

bench_section_catchup() {
  local w
  # whatever happens, no pgrelocate of ours outlives the bench's clusters
  cl_on_exit "pkill -KILL -f '^$CL_DIR/pgrelocate '"
  : >"$BENCH_LOGDIR/catchup-pgrelocate.log"
  : >"$BENCH_LOGDIR/catchup-native.log"
  for w in $BENCH_CATCHUP_WORKLOADS; do
    CATCHUP_WORKLOAD=${w%%:*} CATCHUP_SCALE=${w#*:}
    [[ $CATCHUP_WORKLOAD =~ ^(tpcb|simple)$ && $CATCHUP_SCALE =~ ^[1-9][0-9]*$ ]] ||
      cl_die "BENCH_CATCHUP_WORKLOADS: '$w' is not tpcb:SCALE or simple:SCALE"
    bench_log "== section catchup: $CATCHUP_WORKLOAD at scale $CATCHUP_SCALE, pgrelocate start vs CREATE SUBSCRIPTION," \
      "$BENCH_REPEAT round(s) of a ${BENCH_CATCHUP_SECONDS}s backlog"
    catchup_init_scale "$CATCHUP_SCALE"
    catchup_pgrelocate
    catchup_native
  done
}

# Median of the numbers on stdin ("-" when none is a number).
catchup_median() {
  awk '/^[0-9.]+$/' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "-"; exit }
    print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# Median of field f (1-based, of CATCHUP_RUNS) of one workload's contender.
catchup_field() {
  local w=$1 who=$2 f=$3
  catchup_runs_of "$w" "$who" | cut -d'|' -f"$f" | catchup_median
}
# The rounds (CATCHUP_RUNS entries) of one workload's contender.
catchup_runs_of() {
  printf '%s\n' "${CATCHUP_RUNS[@]}" | awk -v k="$1|$2|" 'index($0, k) == 1'
}

bench_report_catchup() {
  local w who ours theirs lag rounds ws ap tl
  echo
  echo "== catchup (backlogs of ${BENCH_CATCHUP_SECONDS}s of pgbench -c 4; medians of $BENCH_REPEAT round(s);" \
    "lag under ${BENCH_LAG_TPS} tps for ${BENCH_LAG_SECONDS}s)"
  printf '%-10s %-11s %12s %9s %9s %9s %8s %8s %s\n' workload contender transactions seconds 'txn/s' 'WAL MB/s' \
    'lag p50' 'lag p99' 'rounds (s)'
  for w in $BENCH_CATCHUP_WORKLOADS; do
    for who in pgrelocate native; do
      lag=$(printf '%s\n' "${CATCHUP_LAGS[@]}" | awk -F'|' -v k="$w|$who" '$1 "|" $2 == k { print $3 "s", $4 "s" }')
      lag=${lag:-- -}
      rounds=$(catchup_runs_of "$w" "$who" | cut -d'|' -f4 | paste -sd' ')
      printf '%-10s %-11s %12s %9s %9s %9s %8s %8s %s\n' "$w" "$who" "$(catchup_field "$w" "$who" 3)" \
        "$(catchup_field "$w" "$who" 4)" "$(catchup_field "$w" "$who" 5)" "$(catchup_field "$w" "$who" 6)" \
        "${lag% *}" "${lag#* }" "$rounds"
    done
    ours=$(catchup_field "$w" pgrelocate 5) theirs=$(catchup_field "$w" native 5)
    [[ $ours =~ ^[0-9.]+$ && $theirs =~ ^[0-9.]+$ && $theirs != 0 ]] || continue
    awk -v w="$w" -v a="$ours" -v b="$theirs" 'BEGIN { printf "%s: pgrelocate/native apply rate = %.2fx\n", w, a / b }'
  done
  echo "CPU per applied transaction, in µs, while catching up (medians; the machine has $(nproc) cores):"
  echo "  walsender: the source's, feeding the contender; applier: pgrelocate's target sessions, or native's"
  echo "  apply worker; tool: the pgrelocate process; source/target: every process of the cluster"
  printf '%-10s %-11s %9s %9s %9s %9s %9s %9s %8s\n' workload contender walsender applier tool sum \
    source target busy
  for w in $BENCH_CATCHUP_WORKLOADS; do
    for who in pgrelocate native; do
      ws=$(catchup_field "$w" "$who" 7) ap=$(catchup_field "$w" "$who" 8) tl=$(catchup_field "$w" "$who" 9)
      printf '%-10s %-11s %9s %9s %9s %9s %9s %9s %7s%%\n' "$w" "$who" "$ws" "$ap" "$tl" \
        "$(awk -v a="$ws" -v b="$ap" -v c="$tl" 'BEGIN { if (a b c ~ /-/) print "-"; else printf "%.1f", a + b + c }')" \
        "$(catchup_field "$w" "$who" 10)" "$(catchup_field "$w" "$who" 11)" "$(catchup_field "$w" "$who" 12)"
    done
  done
  return 0
}

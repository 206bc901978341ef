# shellcheck shell=bash
# bench/section-verify.sh: comparing source and target, pgrelocate verify
# against its peers, on the same data (a fresh pgrelocate copy, not timed).
#
#   pgrelocate     pgrelocate verify --jobs BENCH_JOBS (rows, schema, sequences)
#   full-hash      per table, on both servers at once (BENCH_JOBS tables at a time
#                  per server): count(*) and md5(string_agg(t::text, '' ORDER BY
#                  primary key)), the usual hand-made check; says nothing about
#                  which rows differ
#   pgcopydb       pgcopydb compare data, when the installed pgcopydb has it
#
# Each must find the copy identical.  Reported: seconds, source rows/s and
# MB/s (table data with TOAST, source side), and time ratios.  Run before the
# catchup section (which writes to the source).

VERIFY_RESULTS=() # "contender|seconds|rows/s|MB/s|result"

verify_totals() {
  cl_query source "$BENCH_DB" "
    select sum(c.reltuples)::bigint || ' ' || sum(pg_table_size(c.oid))
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind = 'r' and n.nspname not in ($CL_OWN_SCHEMAS) and n.nspname !~ '^pg_toast'"
}

verify_pgrelocate() {
  local log=$1
  bench_timed verify "$log" "$CL_DIR/pgrelocate" verify --source "$(cl_uri source "$BENCH_DB")" \
    --target "$(cl_uri target "$BENCH_DB")" --jobs "$BENCH_JOBS"
}

# One background psql per table and side, BENCH_JOBS per side at a time.
verify_full_hash() {
  local log=$1 dir="$CL_DIR/fullhash" i t side running=0 bad=0
  rm -rf "$dir"
  mkdir -p "$dir"
  for i in "${!BENCH_TABLES[@]}"; do
    t=${BENCH_TABLES[i]}
    for side in source target; do
      cl_psql "$side" -d "$BENCH_DB" -At -c "set extra_float_digits = 3" -c "
        select count(*) || ' ' || coalesce(md5(string_agg(t::text, '' order by ${BENCH_ORDER[$t]})), '-')
        from only $t t" >"$dir/$side.$i" 2>>"$log" &
      running=$((running + 1))
    done
    if [ "$running" -ge $((2 * BENCH_JOBS)) ]; then
      wait -n || bad=$((bad + 1))
      running=$((running - 1))
    fi
  done
  while [ "$running" -gt 0 ]; do
    wait -n || bad=$((bad + 1))
    running=$((running - 1))
  done
  for i in "${!BENCH_TABLES[@]}"; do
    if ! cmp -s "$dir/source.$i" "$dir/target.$i"; then
      echo "DIFFERENT ${BENCH_TABLES[i]}: $(cat "$dir/source.$i") vs $(cat "$dir/target.$i")" >>"$log"
      bad=$((bad + 1))
    fi
  done
  [ "$bad" -eq 0 ]
}

verify_pgcopydb() {
  local log=$1
  if ! pgcopydb compare data --help >/dev/null 2>&1; then
    echo "pgcopydb $(pgcopydb --version 2>/dev/null | grep -o 'version [^ ]*' | head -n 1) has no 'compare data'" >>"$log"
    return 127
  fi
  rm -rf "$CL_DIR/pgcopydb-compare"
  bench_timed pgcopydb "$log" pgcopydb compare data --source "$(cl_uri source "$BENCH_DB")" \
    --target "$(cl_uri target "$BENCH_DB")" --dir "$CL_DIR/pgcopydb-compare" --jobs "$BENCH_JOBS"
}

bench_section_verify() {
  local who log t0 t1 rc secs totals rows bytes
  bench_log "== section verify: pgrelocate verify, full-hash, pgcopydb compare data with $BENCH_JOBS jobs"
  bench_reset_target
  bench_log "copying the source to the target for the comparisons (pgrelocate copy, not timed) ..."
  "$CL_DIR/pgrelocate" copy --source "$(cl_uri source "$BENCH_DB")" --target "$(cl_uri target "$BENCH_DB")" \
    --jobs "$BENCH_JOBS" --progress none >"$BENCH_LOGDIR/verify-copy.log" 2>&1 ||
    cl_die "pgrelocate copy failed (bench/results/verify-copy.log)"
  cl_psql source -d "$BENCH_DB" -c "vacuum analyze" -c checkpoint
  cl_psql target -d "$BENCH_DB" -c "vacuum analyze" -c checkpoint
  totals=$(verify_totals)
  rows=${totals% *} bytes=${totals#* }
  for who in pgrelocate full-hash pgcopydb; do
    log="$BENCH_LOGDIR/verify-$who.log"
    : >"$log"
    bench_log "$who: comparing ..."
    t0=$(bench_now)
    rc=0
    case $who in
      pgrelocate) verify_pgrelocate "$log" || rc=$? ;;
      full-hash) verify_full_hash "$log" || rc=$? ;;
      pgcopydb) verify_pgcopydb "$log" || rc=$? ;;
    esac
    t1=$(bench_now)
    secs=$(bench_secs "$t0" "$t1")
    if [ "$rc" -eq 127 ]; then
      VERIFY_RESULTS+=("$who|-|-|-|not available: $(tail -n 1 "$log")")
    else
      VERIFY_RESULTS+=("$who|$secs|$(awk -v r="$rows" -v b="$bytes" -v s="$secs" \
        'BEGIN { printf "%.0f|%.1f", (s > 0 ? r / s : 0), (s > 0 ? b / 1048576 / s : 0) }')|$(
        [ "$rc" -eq 0 ] && echo "identical" || echo "exit $rc")")
    fi
    bench_log "$who: ${VERIFY_RESULTS[-1]}"
  done
}

bench_report_verify() {
  local r who s rps mbps res ours=""
  echo
  echo "== verify (source and target identical; rows and MB/s are the source's tables)"
  printf '%-12s %9s %12s %9s  %s\n' contender seconds 'rows/s' 'MB/s' result
  for r in "${VERIFY_RESULTS[@]}"; do
    IFS='|' read -r who s rps mbps res <<<"$r"
    printf '%-12s %9s %12s %9s  %s\n' "$who" "$s" "$rps" "$mbps" "$res"
    [ "$who" = pgrelocate ] && ours=$s
  done
  for r in "${VERIFY_RESULTS[@]}"; do
    IFS='|' read -r who s _ <<<"$r"
    [ "$who" != pgrelocate ] && [ "$s" != - ] && [ -n "$ours" ] &&
      awk -v a="$ours" -v b="$s" -v w="$who" \
        'BEGIN { if (b > 0) printf "pgrelocate/%s = %.2fx (time: %.1f s vs %.1f s)\n", w, a / b, a, b }'
  done
  return 0
}

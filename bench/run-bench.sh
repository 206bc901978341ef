#!/usr/bin/env bash
# make bench: pgrelocate against its peers, in the same run, on the same data.
#
# Starts a source and a target cluster with identical settings in a temporary
# directory (as an unprivileged user, loopback only), generates the dataset
# (bench/dataset.sh), then runs each section: for every contender, a fresh
# empty target, the timed run, and a check of the result against the source.
# Prints a table and time ratios and writes them to bench/results/latest.txt
# (contender logs beside it).  Clusters stopped, temp data removed on exit.
#
# Environment:
#   BENCH_SCALE=100         pgbench scale; the docs table scales with it (~2 GB at 100)
#   BENCH_JOBS=$(nproc)     parallel jobs given to every contender
#   BENCH_ONLY="copy verify sync catchup pause"  sections to run (space or comma separated); catchup
#                           (change replication vs CREATE SUBSCRIPTION) and pause (cutover and
#                           rollback through pgbouncer under pgbench) write to the source: last;
#                           verify (pgrelocate verify vs per-table full hash vs pgcopydb compare)
#   sync: start under a rate-limited load, per-table sync vs --one-snapshot: time to copy done,
#                           to the first applied change, and the longest snapshot hold on the source
#   BENCH_SYNC_TPS=200      sync section's pgbench rate
#   BENCH_CATCHUP_SECONDS=30, BENCH_LAG_SECONDS=20, BENCH_LAG_TPS=500   catchup section knobs
#   BENCH_CATCHUP_WORKLOADS="tpcb:50 simple:10"   catchup: pgbench script (tpcb, or simple: -N)
#                           and scale of each workload
#   BENCH_PAUSE_SECONDS=15, BENCH_PAUSE_CLIENTS=8   pause section knobs
#   BENCH_CONTENDERS="pgrelocate dump+restore pgcopydb"   copy section contenders
#   BENCH_REPEAT=1          rounds of all contenders; the report keeps each one's fastest (catchup:
#                           the median of each number)
#   BENCH_SPLIT=SIZE        pass --split-larger-than SIZE to pgrelocate
#   BENCH_PGCOPYDB_SPLIT=SIZE  pass --split-tables-larger-than SIZE to pgcopydb
#   PGRELOCATE=path         binary under test (default ./pgrelocate)
#   BENCH_TMPDIR=/var/tmp   where the clusters live
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_SCALE=${BENCH_SCALE:-100}
BENCH_JOBS=${BENCH_JOBS:-$(nproc)}
BENCH_ONLY=${BENCH_ONLY:-copy verify sync catchup pause}
BENCH_ONLY=${BENCH_ONLY//,/ }
BENCH_CONTENDERS=${BENCH_CONTENDERS:-pgrelocate dump+restore pgcopydb}
BENCH_CONTENDERS=${BENCH_CONTENDERS//,/ }
BENCH_REPEAT=${BENCH_REPEAT:-1}
BENCH_DB=bench
BENCH_LOGDIR="$top/bench/results"
PGRELOCATE=${PGRELOCATE:-$top/pgrelocate}
CL_TMPROOT=${BENCH_TMPDIR:-/var/tmp}

# shellcheck source=scripts/cluster-lib.sh
. "$top/scripts/cluster-lib.sh"
# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"
# shellcheck source=bench/dataset.sh
. "$top/bench/dataset.sh"
# shellcheck source=bench/section-copy.sh
. "$top/bench/section-copy.sh"
# shellcheck source=bench/section-verify.sh
. "$top/bench/section-verify.sh"
# shellcheck source=bench/section-catchup.sh
. "$top/bench/section-catchup.sh"
# shellcheck source=bench/section-sync.sh
. "$top/bench/section-sync.sh"
# shellcheck source=scripts/bouncer-lib.sh
. "$top/scripts/bouncer-lib.sh"
# shellcheck source=bench/section-pause.sh
. "$top/bench/section-pause.sh"

bench_install_peers() {
  if ! command -v pgcopydb >/dev/null && [[ " $BENCH_CONTENDERS " == *" pgcopydb "* ]]; then
    bench_log "installing pgcopydb (Debian package) ..."
    PGRELOCATE_WITH_PGCOPYDB=1 "$top/scripts/install-deps.sh" ||
      bench_log "could not install pgcopydb: that contender will be reported as failed"
  fi
  [ -x /usr/bin/time ] || PGRELOCATE_WITH_PGCOPYDB=0 "$top/scripts/install-deps.sh"
  [ -x /usr/bin/time ] || cl_die "GNU time (/usr/bin/time, Debian package 'time') is required"
}

bench_header() {
  echo "pgrelocate bench, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM;" \
    "load average before/after: $BENCH_LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg); $("$CL_PGBIN/postgres" --version)"
  echo "pgrelocate: $PGRELOCATE ($(cl_run "$CL_DIR/pgrelocate" --version 2>/dev/null || echo 'not built'))"
  echo "pgcopydb: $(pgcopydb --version 2>/dev/null | grep -o 'pgcopydb version [^ ]*' | head -n 1 || echo 'not installed')"
  echo "dataset: pgbench scale $BENCH_SCALE + $((BENCH_SCALE * 12)) jsonb/bytea documents;" \
    "source database $((BENCH_SRC_BYTES / 1048576)) MB; jobs $BENCH_JOBS"
  local ours="(default split)" theirs="(no split)"
  [ -z "${BENCH_SPLIT:-}" ] || ours="--split-larger-than $BENCH_SPLIT"
  [ -z "${BENCH_PGCOPYDB_SPLIT:-}" ] || theirs="--split-tables-larger-than $BENCH_PGCOPYDB_SPLIT"
  echo "options: pgrelocate $ours; pgcopydb $theirs"
  echo "settings (source and target): ${BENCH_SETTINGS[*]}"
  echo "peak RSS: GNU time's maximum resident set of the largest single process of the tool (max of pg_dump and pg_restore)"
  echo "statistics: non-empty tables with pg_stats rows / with reltuples > 0, right after the tool exits"
}

main() {
  local section
  for section in $BENCH_ONLY; do
    declare -F "bench_section_$section" >/dev/null || cl_die "unknown section '$section' (known: copy, verify, sync, catchup, pause)"
    if declare -F "bench_check_$section" >/dev/null; then "bench_check_$section"; fi
  done
  BENCH_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  mkdir -p "$BENCH_LOGDIR"
  bench_install_peers
  cl_setup pgrelocate-bench
  if [ -x "$PGRELOCATE" ]; then install -m 755 "$PGRELOCATE" "$CL_DIR/pgrelocate"; fi
  bench_start_clusters
  bench_generate_dataset
  bench_fingerprint_source
  for section in $BENCH_ONLY; do
    "bench_section_$section"
  done
  {
    echo
    bench_header
    for section in $BENCH_ONLY; do
      "bench_report_$section"
    done
  } | tee "$BENCH_LOGDIR/latest.txt"
  echo
  echo "written to bench/results/latest.txt (contender logs: bench/results/*.log)"
}

main "$@"

#!/usr/bin/env bash
# The version matrix (make test-versions): every source 12 to 18 to the
# newest target and to the next major, each through e2e 060 (check, start
# under pgbench through pgbouncer, verify, status, cutover, reverse stream,
# rollback, cleanup) on servers of those versions.  One run of 060 per pair,
# one at a time; the results go to build/versions/results.tsv and the table
# between the markers in README.md.
#
#   scripts/test-versions.sh             the whole matrix
#   VERSION_PAIRS="12-18 16-17" scripts/test-versions.sh   some pairs
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
newest=18
pairs=${VERSION_PAIRS:-}
if [ -z "$pairs" ]; then
  for s in 12 13 14 15 16 17 18; do
    pairs+=" $s-$newest"
    [ "$s" -lt "$newest" ] && [ "$((s + 1))" -ne "$newest" ] && pairs+=" $s-$((s + 1))"
  done
fi

"$top/scripts/pg-versions.sh" 12 13 14 16 17 18
"$top/scripts/pg-versions.sh" client 18

out=$top/build/versions
mkdir -p "$out"
results=$out/results.tsv
printf 'source\ttarget\tresult\tseconds\tdate\n' >"$results"
failed=0
for p in $pairs; do
  echo "=== pair $p" >&2
  t0=$(date +%s)
  if E2E_VERSIONS=$p E2E_JOBS=1 E2E_TESTS=t/060_versions.pl "$top/scripts/run-e2e.sh" >"$out/$p.log" 2>&1; then
    result=pass
  else
    result=FAIL
    failed=$((failed + 1))
    tail -n 30 "$out/$p.log" >&2
  fi
  secs=$(($(date +%s) - t0))
  echo "pair $p: $result in $secs s" >&2
  printf '%s\t%s\t%s\t%s\t%s\n' "${p%-*}" "${p#*-}" "$result" "$secs" "$(date -u +%Y-%m-%d)" >>"$results"
done

# README: the table of the pairs of this run, between the markers.
table=$(awk -F'\t' 'NR == 1 { next }
  { printf "| %s | %s | %s | %s s |\n", $1, $2, $3, $4 }' "$results")
{
  echo "<!-- versions-table: written by make test-versions, do not edit -->"
  echo "| source | target | result | time |"
  echo "| --- | --- | --- | --- |"
  echo "$table"
  echo "<!-- versions-table end -->"
} >"$out/table.md"
if grep -q '^<!-- versions-table:' "$top/README.md"; then
  awk -v f="$out/table.md" '
    /^<!-- versions-table:/ { while ((getline l < f) > 0) print l; skip = 1; next }
    /^<!-- versions-table end -->/ { skip = 0; next }
    !skip' "$top/README.md" >"$out/README.new" && mv "$out/README.new" "$top/README.md"
fi
n=$(echo $pairs | wc -w)
echo "$((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]

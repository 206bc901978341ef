#!/usr/bin/env bash
# Run the end-to-end TAP suite (tests/e2e/t/*.pl) with prove.
# PostgreSQL refuses to run as root: as root, this stages the binary and the
# tests in a temporary directory owned by an unprivileged user and runs prove
# as that user.  Test clusters live under that directory and are stopped by
# PostgreSQL::Test::Cluster even when a test fails; the directory is removed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
perllib=/usr/lib/postgresql/15/lib/pgxs/src/test/perl
testuser=${PGRELOCATE_TEST_USER:-pgrelocate-test}
tests=${E2E_TESTS:-t/*.pl}
jobs=${E2E_JOBS:-2}

stage=$(mktemp -d /tmp/pgrelocate-e2e.XXXXXX)
cleanup() { if [ -n "${E2E_KEEP:-}" ]; then echo "--- kept $stage" >&2; else rm -rf "$stage"; fi; }
trap cleanup EXIT
cp "$top/${E2E_BINARY:-pgrelocate}" "$stage/pgrelocate"
cp -r "$top/tests/e2e/." "$stage/"
chmod 755 "$stage"
# A sanitized binary (make e2e-asan) writes its reports under $stage/sanitizer;
# any report fails the run, whatever the tests said.
san_env=()
if [ -n "${E2E_SANITIZED:-}" ]; then
  mkdir -p "$stage/sanitizer"
  san_env=(E2E_SANITIZED=1 ASAN_OPTIONS="log_path=$stage/sanitizer/asan:detect_leaks=1"
    UBSAN_OPTIONS="log_path=$stage/sanitizer/ubsan:print_stacktrace=1")
fi

run=()
if [ "$(id -u)" -eq 0 ]; then
  id "$testuser" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$testuser"
  chown -R "$testuser" "$stage"
  run=(runuser -u "$testuser" --)
fi
cd "$stage"
status=0
"${run[@]}" env PATH="$stage:$pgbin:/usr/bin:/bin" PERL5LIB="$perllib:$stage/lib" \
  PGRELOCATE="$stage/pgrelocate" PGRELOCATE_PG_VERSIONS="${PGRELOCATE_PG_VERSIONS:-$top/build/pg}" \
  PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-180}" \
  TESTDIR="$stage" "${san_env[@]}" prove -j "$jobs" --timer $tests 2>&1 | tee "$stage/prove.out" || status=$?
if [ -n "${E2E_SANITIZED:-}" ] && [ -n "$(ls -A "$stage/sanitizer")" ]; then
  for f in "$stage"/sanitizer/*; do
    echo "=== sanitizer report $(basename "$f")" >&2
    head -n 60 "$f" >&2
  done
  echo "--- e2e: the sanitized binary reported $(ls "$stage/sanitizer" | wc -l) problem(s) (above)" >&2
  [ "$status" -ne 0 ] || status=1
fi
[ "$status" -eq 0 ] && exit 0

# A failure: show the logs of the failing scripts only, then repeat prove's
# summary last, so the end of the output (often all a CI keeps) names them.
failed=$(sed -n 's#^\(t/[^ ]*\.pl\) .*(Wstat.*#\1#p' "$stage/prove.out" | sort -u)
echo "--- e2e failed: ${failed:-see above}" >&2
for t in $failed; do
  base=$(basename "$t" .pl)
  log="$stage/tmp_check/log/regress_log_$base"
  if [ -f "$log" ] && grep -q 'not ok' "$log"; then
    echo "=== $log: around each failed assertion" >&2
    grep -n -B 40 -A 8 'not ok' "$log" | head -n 400 >&2
  fi
  for f in "$stage"/tmp_check/log/*"$base"*; do
    [ -f "$f" ] || continue
    echo "=== $f (last 80 lines)" >&2
    tail -n 80 "$f" >&2
  done
done
echo "--- prove summary" >&2
sed -n '/^Test Summary Report/,$p' "$stage/prove.out" >&2
# Last, compactly: each failed assertion with the lines that explain it
# (a CI may keep only the last few dozen lines of the output).
echo "--- failed assertions (at most 3 per script)" >&2
for t in $failed; do
  log="$stage/tmp_check/log/regress_log_$(basename "$t" .pl)"
  [ -f "$log" ] || continue
  awk -v t="$t" '/not ok [0-9]/ { if (++n > 3) exit; sub(/^\[[^]]*\]\([^)]*\) /, ""); print t ": " $0; k = 5; next }
                 k > 0 && /#/ { sub(/^\[[^]]*\]\([^)]*\) /, ""); if ($0 !~ /^# *$/) { print "    " substr($0, 1, 160); k-- } }' "$log" >&2
done
echo "--- failing scripts: ${failed:-unknown}" >&2
exit "$status"

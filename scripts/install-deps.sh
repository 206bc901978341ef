#!/usr/bin/env bash
# Install the Debian packages pgrelocate's build, tests, demo and bench need,
# only those missing.  Safe to run again; needs root (or sudo) only when
# something is missing.
set -euo pipefail

pkgs=(
  build-essential pkg-config libpq-dev libjansson-dev libcmocka-dev libmicrohttpd-dev
  postgresql-15 postgresql-client-15 postgresql-contrib libipc-run-perl
  pgbouncer clang-format cppcheck clang-14 libclang-rt-14-dev time
)
[ "${PGRELOCATE_WITH_PGCOPYDB:-0}" = 1 ] && pkgs+=(pgcopydb)
pkgs+=(locales)

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
# e2e 014 runs a server with German messages (lc_messages): the locale must exist.
ensure_locale() {
  locale -a 2>/dev/null | grep -qx 'de_DE.utf8' || $sudo localedef -i de_DE -f UTF-8 de_DE.UTF-8
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then ensure_locale; exit 0; fi

echo "installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The postgresql package would create and start a "main" cluster we do not
# want; policy-rc.d keeps services from starting during the install.
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
# pgbouncer's Debian service is not ours to run.
if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi
echo "installed: ${missing[*]}"
ensure_locale

#!/usr/bin/env bash
# The fleet tier: every service as two replicas (separate processes on 127.0.0.2 and 127.0.0.3) behind HAProxy, for
# REST (HTTP/1.1) and gRPC (h2), all on one PostgreSQL database.
#
#   bash scripts/fleet_tier.sh               # set up, run tests/fleet, tear down; non-zero on any failure
#   bash scripts/fleet_tier.sh CMD [ARG...]  # same database, run CMD instead (FXPLAT_FLEET_DATABASE_URL is set)
#
# Installs what is missing (Debian's haproxy and postgresql, the postgres extra of the package), starts a throwaway
# PostgreSQL cluster on a free loopback port, then runs tests/fleet: its session fixture starts the eight replicas
# (`fxplat up --service S --host 127.0.0.x`) and HAProxy on free ports and stops them all at the end. The tests check
# every RPC through the balancer on both transports, an import made by one market replica served by the other, and
# that a rolling restart of every replica and a SIGKILLed replica, under 16 callers, lose no call. Nothing is ever
# skipped: a missing server, a skipped test, or no test at all fails the tier.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

TIER=fleet
. scripts/lib/tier.sh

[ -x "$PYTHON" ] || die "no $PYTHON: run 'bash scripts/install.sh' first"

# --- HAProxy and PostgreSQL (Debian's packages) ----------------------------------------------------------------------
apt_need haproxy haproxy
say "$(haproxy -v | head -n 1)"
. scripts/lib/postgres.sh
pg_install
"$PYTHON" -m pip install -q -e ".[postgres]" || die "pip install of the postgres extra (asyncpg, psycopg) failed"

# --- the database, always cleaned up (the test fixture stops the replicas and HAProxy it starts) --------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fxplat-fleet.XXXXXX")
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  pg_stop
  [ "$status" != 0 ] && pg_log_tail
  rm -rf "$WORK"
  say "database stopped, $WORK removed (exit $status, $(elapsed) in all)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_start "$WORK"
pg_createdb fxplat
export FXPLAT_FLEET_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/fxplat"
say "PostgreSQL on 127.0.0.1:$PG_PORT ($(elapsed))"
# The schema, made explicitly as a deployment would (the replicas would otherwise race to it, safely, under a lock).
DATABASE_URL=$FXPLAT_FLEET_DATABASE_URL "$PYTHON" -m fxplat db upgrade --data-dir "$WORK/upgrade" \
  || die "fxplat db upgrade failed"

if [ "$#" -gt 0 ]; then
  say "running: $*"
  "$@"
  exit $?
fi

# --- the tier's tests: they must all run and pass -------------------------------------------------------------------
say "running tests/fleet"
set +e
"$PYTHON" -m pytest tests/fleet -m fleet -p no:cacheprovider -rA --junitxml="$WORK/junit.xml" \
  -o log_cli=false --basetemp="$WORK/pytest"
status=$?
set -e
if [ "$status" != 0 ]; then
  for log in "$WORK"/pytest/fleet*/*.log; do
    [ -s "$log" ] && { echo "--- last lines of $(basename "$log")" >&2; tail -n 15 "$log" >&2; }
  done
fi
tier_verdict "$status" "$WORK/junit.xml"
say "PASSED ($(elapsed))"

#!/usr/bin/env bash
# The Unleash tier: fxplat's flags from a real Unleash server.
#
#   bash scripts/unleash_tier.sh              # set up, run tests/unleash, tear down; non-zero on any failure
#   bash scripts/unleash_tier.sh CMD [ARG...]  # same servers, but run CMD instead (e.g. `bash` to poke at them)
#
# Installs what is missing (PostgreSQL from Debian's packages, unleash-server from npm into a cache outside the tracked
# files), starts a throwaway PostgreSQL cluster and Unleash on free loopback ports, waits for Unleash's /health, then
# runs the tier's tests with UNLEASH_URL / UNLEASH_API_TOKEN (client token) and UNLEASH_ADMIN_URL / UNLEASH_ADMIN_TOKEN
# (admin token) set. Both servers are stopped and the cluster removed on every exit. Nothing is ever skipped: a server
# that cannot be installed or started, a skipped test, or no test at all fails the tier.
#
# Knobs (environment): UNLEASH_SERVER_VERSION (npm version, default below), FXPLAT_UNLEASH_CACHE (where it is
# installed, default .cache/unleash), UNLEASH_START_TIMEOUT (seconds to wait for /health, default 180).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# 7.5.1: the newest unleash-server whose package declares Node >= 20 (7.6 and 8.x declare >= 22); installs from the
# npm registry alone.
UNLEASH_SERVER_VERSION=${UNLEASH_SERVER_VERSION:-7.5.1}
CACHE=${FXPLAT_UNLEASH_CACHE:-$ROOT/.cache/unleash}
START_TIMEOUT=${UNLEASH_START_TIMEOUT:-180}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

TIER=unleash
. scripts/lib/tier.sh

[ -x "$PYTHON" ] || die "no $PYTHON: run 'bash scripts/install.sh' first"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed (Node 20+)"

random_hex() { "$PYTHON" -c 'import secrets; print(secrets.token_hex(16))'; }

# --- PostgreSQL (Debian's packages) ----------------------------------------------------------------------------------
. scripts/lib/postgres.sh
pg_install

# --- unleash-server (npm), cached outside the tracked files --------------------------------------------------------
installed_version() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
    "$CACHE/node_modules/unleash-server/package.json"
}
# The marker is written only after a complete install: an interrupted one is redone, not trusted.
INSTALLED_MARK=$CACHE/.installed-unleash-server-$UNLEASH_SERVER_VERSION
if [ ! -f "$INSTALLED_MARK" ] || [ "$(installed_version)" != "$UNLEASH_SERVER_VERSION" ]; then
  rm -f "$CACHE"/.installed-unleash-server-*
  say "installing unleash-server@$UNLEASH_SERVER_VERSION into $CACHE (npm)"
  mkdir -p "$CACHE"
  # A package.json of its own, so npm installs here and never touches the repository's package.json.
  printf '{"name": "fxplat-unleash-tier", "private": true, "dependencies": {"unleash-server": "%s"}}\n' \
    "$UNLEASH_SERVER_VERSION" >"$CACHE/package.json"
  (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error --engine-strict=false) \
    || die "npm install unleash-server@$UNLEASH_SERVER_VERSION failed"
  [ "$(installed_version)" = "$UNLEASH_SERVER_VERSION" ] || die "npm install did not leave unleash-server@$UNLEASH_SERVER_VERSION"
  touch "$INSTALLED_MARK"
fi
say "unleash-server $(installed_version), node $(node --version) ($(elapsed))"

# --- start both, always clean up -------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fxplat-unleash.XXXXXX")
UNLEASH_PID=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$UNLEASH_PID" ] && kill -0 "$UNLEASH_PID" 2>/dev/null; then
    kill "$UNLEASH_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$UNLEASH_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$UNLEASH_PID" 2>/dev/null || true
  fi
  pg_stop
  if [ "$status" != 0 ]; then
    [ -s "$WORK/unleash.log" ] && { echo "--- last lines of unleash.log" >&2; tail -n 40 "$WORK/unleash.log" >&2; }
    pg_log_tail
  fi
  rm -rf "$WORK"
  say "servers stopped, $WORK removed (exit $status, $(elapsed) in all)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_start "$WORK"
pg_createdb unleash
# The same cluster also holds fxplat's own tables: backtests and analyses on PostgreSQL (DATABASE_URL), with asyncpg.
pg_createdb fxplat
"$PYTHON" -m pip install -q -e ".[postgres]" || die "pip install of the postgres extra (asyncpg) failed"
export FXPLAT_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PG_PORT/fxplat"
say "PostgreSQL on 127.0.0.1:$PG_PORT ($(elapsed))"

UNLEASH_PORT=$(free_port)
UNLEASH_BASE=http://127.0.0.1:$UNLEASH_PORT
ADMIN_TOKEN="*:*.$(random_hex)"
CLIENT_TOKEN="default:development.$(random_hex)"
(
  cd "$CACHE"
  export TZ=UTC NODE_ENV=production
  export HTTP_HOST=127.0.0.1 HTTP_PORT=$UNLEASH_PORT UNLEASH_URL=$UNLEASH_BASE
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/unleash" DATABASE_SSL=false
  export INIT_ADMIN_API_TOKENS=$ADMIN_TOKEN INIT_CLIENT_API_TOKENS=$CLIENT_TOKEN
  # No internet here: no version check, no telemetry.
  export CHECK_VERSION=false SEND_TELEMETRY=false LOG_LEVEL=info  # to the log file, shown on failure
  exec node node_modules/unleash-server/dist/server.js
) >"$WORK/unleash.log" 2>&1 &
UNLEASH_PID=$!
say "unleash-server starting on $UNLEASH_BASE (pid $UNLEASH_PID); waiting up to ${START_TIMEOUT}s for /health"
deadline=$((SECONDS + START_TIMEOUT))
until curl -fsS --max-time 2 "$UNLEASH_BASE/health" >/dev/null 2>&1; do
  kill -0 "$UNLEASH_PID" 2>/dev/null || die "unleash-server exited during startup (log above)"
  [ "$SECONDS" -lt "$deadline" ] || die "unleash-server did not answer $UNLEASH_BASE/health within ${START_TIMEOUT}s"
  sleep 1
done
# The client token must be accepted before the tests start (tokens are created after the migrations).
curl -fsS --max-time 5 -H "Authorization: $CLIENT_TOKEN" "$UNLEASH_BASE/api/client/features" >/dev/null \
  || die "unleash-server does not accept the client token on /api/client/features"
curl -fsS --max-time 5 -H "Authorization: $ADMIN_TOKEN" "$UNLEASH_BASE/api/admin/projects" >/dev/null \
  || die "unleash-server does not accept the admin token on /api/admin/projects"
say "unleash-server healthy: $(curl -fsS "$UNLEASH_BASE/health") ($(elapsed))"

export UNLEASH_URL=$UNLEASH_BASE/api UNLEASH_API_TOKEN=$CLIENT_TOKEN
export UNLEASH_ADMIN_URL=$UNLEASH_BASE UNLEASH_ADMIN_TOKEN=$ADMIN_TOKEN
export UNLEASH_PROJECT=default UNLEASH_ENVIRONMENT=development

if [ "$#" -gt 0 ]; then
  say "running: $*"
  "$@"
  exit $?
fi

# --- the tier's tests: they must all run and pass -------------------------------------------------------------------
say "running tests/unleash"
set +e
"$PYTHON" -m pytest tests/unleash -m unleash -p no:cacheprovider -rA --junitxml="$WORK/junit.xml"
status=$?
set -e
tier_verdict "$status" "$WORK/junit.xml"
say "PASSED ($(elapsed))"

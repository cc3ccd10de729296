#!/usr/bin/env bash
# The Prometheus tier: metric-gated rollouts judged by a real Prometheus scraping a real platform.
#
#   bash scripts/prometheus_tier.sh              # check and test the alert rules, then run tests/prometheus
#   bash scripts/prometheus_tier.sh CMD [ARG...]  # same servers, but run CMD instead (e.g. `bash` to poke at them)
#
# Installs Debian's prometheus if promtool or prometheus is missing; runs `promtool check rules` and `promtool test
# rules` on deploy/prometheus; starts `fxplat up` (auth off, a flags file and data directory of its own, free loopback
# ports) and Prometheus scraping every service every second (plus the test process, through a file_sd file the test
# writes); then runs tests/prometheus: one automated rollout to 100 % and one that rolls back by itself on a skewed
# gRPC answer. Everything is stopped on every exit. Nothing is ever skipped: a missing tool, a server that does not
# start, a skipped test or no test at all fails the tier.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
FXPLAT=${FXPLAT:-$ROOT/.venv/bin/fxplat}
START_TIMEOUT=${PROMETHEUS_TIER_START_TIMEOUT:-90}

TIER=prometheus
. scripts/lib/tier.sh

[ -x "$PYTHON" ] && [ -x "$FXPLAT" ] || die "no $PYTHON / $FXPLAT: run 'bash scripts/install.sh' first"

# --- Prometheus (Debian's package) -----------------------------------------------------------------------------------
apt_need prometheus prometheus promtool
say "$(prometheus --version 2>&1 | head -n 1)"

# --- the rules: syntax, then their unit tests (a firing and a non-firing case per alert) ----------------------------
promtool check rules deploy/prometheus/rules.yml || die "promtool check rules"
(cd deploy/prometheus && promtool test rules rules_test.yml) || die "promtool test rules"
alerts=$(grep -c '^ *- alert:' deploy/prometheus/rules.yml)
tested=$(grep -o 'alertname: [A-Za-z]*' deploy/prometheus/rules_test.yml | sort -u | wc -l)
[ "$alerts" = "$tested" ] || die "$alerts alerts in rules.yml but $tested of them unit-tested in rules_test.yml"
say "rules: $alerts alerts checked and unit-tested ($(elapsed))"

# --- start the platform and Prometheus, always clean up -------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fxplat-prometheus.XXXXXX")
FXPLAT_PID=""
PROM_PID=""
stop_pid() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$FXPLAT_PID"
  stop_pid "$PROM_PID"
  if [ "$status" != 0 ]; then
    for log in "$WORK/fxplat.log" "$WORK/prometheus.log"; do
      [ -s "$log" ] && { echo "--- last lines of $(basename "$log")" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  rm -rf "$WORK"
  say "platform and Prometheus stopped, $WORK removed (exit $status, $(elapsed) in all)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export FXPLAT_DATA_DIR=$WORK/data FXPLAT_FLAGS=$WORK/flags.yaml FXPLAT_AUTH=off FXPLAT_ACTOR=prometheus-tier
export FXPLAT_HOST=127.0.0.1
mkdir -p "$FXPLAT_DATA_DIR"
unset UNLEASH_URL UNLEASH_ADMIN_URL DATABASE_URL PROMETHEUS_URL
cat >"$FXPLAT_FLAGS" <<'YAML'
# The tier's flags: everything on REST until a rollout moves it.
kill_switch: false
services:
  market_analysis: {grpc: 0, shadow: 0}
  causal_analysis: {grpc: 0, shadow: 0}
  backtesting: {grpc: 0, shadow: 0}
  analysis_coordinator: {grpc: 0, shadow: 0}
YAML
targets=""
for service in market_analysis causal_analysis backtesting analysis_coordinator; do
  upper=${service^^}
  rest=$(free_port)
  grpc=$(free_port)
  export "FXPLAT_${upper}_REST_PORT=$rest" "FXPLAT_${upper}_GRPC_PORT=$grpc"
  targets="$targets\"127.0.0.1:$rest\", "
done
PROM_PORT=$(free_port)
export PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT FXPLAT_PROM_SD_FILE=$WORK/test_targets.json
echo '[]' >"$FXPLAT_PROM_SD_FILE"
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/rules.yml
scrape_configs:
  - job_name: fxplat          # every service's REST port serves /metrics
    static_configs:
      - targets: [${targets%, }]
  - job_name: fxplat-callers  # processes that call the services (the tier's test), added as they start
    file_sd_configs:
      - files: [$FXPLAT_PROM_SD_FILE]
        refresh_interval: 1s
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1h >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
# The platform knows Prometheus too: the coordinator's status page charts the whole fleet from it.
"$FXPLAT" up --log-format json >"$WORK/fxplat.log" 2>&1 &
FXPLAT_PID=$!

deadline=$((SECONDS + START_TIMEOUT))
until curl -fsS --max-time 2 "$PROMETHEUS_URL/-/ready" >/dev/null 2>&1; do
  kill -0 "$PROM_PID" 2>/dev/null || die "prometheus exited during startup"
  [ "$SECONDS" -lt "$deadline" ] || die "prometheus not ready within ${START_TIMEOUT}s"
  sleep 0.5
done
for service in market_analysis causal_analysis backtesting analysis_coordinator; do
  port_var="FXPLAT_${service^^}_REST_PORT"
  until curl -fsS --max-time 2 "http://127.0.0.1:${!port_var}/readyz" >/dev/null 2>&1; do
    kill -0 "$FXPLAT_PID" 2>/dev/null || die "fxplat up exited during startup"
    [ "$SECONDS" -lt "$deadline" ] || die "$service not ready within ${START_TIMEOUT}s"
    sleep 0.5
  done
done
# Prometheus has scraped all four before the tests start.
until [ "$(curl -fsS "$PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=count(up{job="fxplat"} == 1)' \
          | "$PYTHON" -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')" = 4 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "Prometheus did not scrape all four services within ${START_TIMEOUT}s"
  sleep 0.5
done
say "platform (pid $FXPLAT_PID) and Prometheus $PROMETHEUS_URL (pid $PROM_PID) up, scraping ($(elapsed))"

if [ "$#" -gt 0 ]; then
  say "running: $*"
  "$@"
  exit $?
fi

say "running tests/prometheus"
set +e
"$PYTHON" -m pytest tests/prometheus -m prometheus -p no:cacheprovider -rA --junitxml="$WORK/junit.xml"
status=$?
set -e
tier_verdict "$status" "$WORK/junit.xml"
say "PASSED ($(elapsed))"

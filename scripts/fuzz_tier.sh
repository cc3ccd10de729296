#!/usr/bin/env bash
# Fuzz tier: the full-size fuzzers (tests/test_fuzz_rest.py, tests/test_fuzz_grpc.py) with 50 examples per REST
# operation and mode (schema-valid and schema-invalid) and per gRPC RPC, against all four services started by the tests
# on free loopback ports. The plain `pytest` run does the same with FXPLAT_FUZZ_EXAMPLES' small default.
# Fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && .venv/bin/python -c "import schemathesis, hypothesis" 2>/dev/null || bash scripts/install.sh
export FXPLAT_FUZZ_EXAMPLES="${FXPLAT_FUZZ_EXAMPLES:-50}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=5 \
    tests/test_fuzz_rest.py tests/test_fuzz_grpc.py "$@"

#!/usr/bin/env bash
# One command installs fxplat on a fresh machine: a virtualenv with the package and its test extra, plus buf (npm).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# npm install (not npm ci): npm 11 leaves other platforms' optional buf binaries out of the lock, which npm ci rejects.
npm install --no-audit --no-fund --loglevel=error
echo "installed: activate with '. .venv/bin/activate', then run 'fxplat up'"

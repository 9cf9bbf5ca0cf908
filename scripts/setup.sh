#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs medsettle with everything it needs.
# Idempotent: a second run only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN=${PYTHON_BIN:-python3.11}
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON_BIN" -m venv .venv
fi
stamp=.venv/.medsettle-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
# The Node.js client example, where npm exists (its test needs it; CI has it):
# installed from the committed lock file.
if command -v npm >/dev/null 2>&1 && [ ! examples/node/node_modules/.package-lock.json -nt examples/node/package-lock.json ]; then
  (cd examples/node && npm ci --no-audit --no-fund --loglevel=error)
fi

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
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  # The first install takes minutes: say so. pip's own output (its warnings
  # included) goes to a log, shown if the install fails.
  echo "setup: installing medsettle and its dependencies into .venv (a few minutes the first time; log: .venv/setup.log)" >&2
  if ! { .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip &&
         # Builds the compiled core too (setup.py: Cython; interpreted without a C compiler).
         .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"; } >.venv/setup.log 2>&1; then
    tail -n 40 .venv/setup.log >&2
    echo "setup: the install failed (above: the end of .venv/setup.log)" >&2
    exit 1
  fi
  grep '^ *medsettle:' .venv/setup.log >&2 || true  # setup.py's word when the core stays interpreted
  touch "$stamp"
fi
# A compiled-core source edited since its build: compile it again in place
# (until then it runs interpreted, with a warning; medsettle/compiled.py).
if command -v cc >/dev/null 2>&1 && .venv/bin/python -c "import sys; from medsettle import compiled; sys.exit(all(compiled.active().values()))" 2>/dev/null; then
  .venv/bin/python setup.py --quiet build_ext --inplace
fi
# What only the test suite needs (the README's second command passes
# --for-tests): the Node.js example's packages and the PostgreSQL binaries.
# The first command (run.sh, SQLite) needs neither.
[ "${1:-}" = "--for-tests" ] || exit 0
# The Node.js client example, where npm exists (its test needs it; CI has it):
# installed from the committed lock file.
if command -v npm >/dev/null 2>&1 && [ ! examples/node/node_modules/.package-lock.json -nt examples/node/package-lock.json ]; then
  (cd examples/node && npm ci --no-audit --no-fund --loglevel=error)
fi
# The PostgreSQL tier of the tests starts a throwaway server from the
# PostgreSQL binaries (initdb, pg_ctl, postgres): install them where missing.
. scripts/lib/postgres.sh  # pg_bindir
if ! pg_bindir >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing PostgreSQL server binaries (Debian package postgresql)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: the PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing;" \
         "install them (Debian/Ubuntu: sudo apt-get install postgresql) and run this again" >&2
    exit 1
  fi
  pg_bindir >/dev/null || { echo "setup: PostgreSQL installed but initdb/pg_ctl not found" >&2; exit 1; }
fi

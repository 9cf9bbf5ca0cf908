#!/usr/bin/env bash
# Sets everything up, then runs every check: generated protobuf code current,
# buf lint, the whole test suite (unit, service, end-to-end), and a short
# load benchmark whose summary is printed (not asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --for-tests
bash scripts/check_protos.sh
set +e
run_pytest() {
  "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "pytest collected no tests" >&2
    return 1
  fi
  return $rc
}
# Twice, the whole suite: with the compiled core (medsettle/compiled.py),
# then interpreted, so both paths pass every test. Arguments, if given,
# select the tests of both passes. Each pass spreads the tests over the
# machine's cores (pytest-xdist, at most WORKERS_MAX processes): much of a
# test is waiting on a server, a subprocess or an fsync, so two workers on
# two cores finish in about 60 % of one worker's time.
WORKERS_MAX=4
workers=(-n auto --maxprocesses "$WORKERS_MAX")
echo "== tests, compiled core =="
run_pytest .venv/bin/python -m pytest "${workers[@]}" "$@" || exit $?
echo "== tests, interpreted (MEDSETTLE_PURE=1) =="
run_pytest env MEDSETTLE_PURE=1 .venv/bin/python -m pytest -q "${workers[@]}" "$@" || exit $?
set -e
if [ -f scripts/bench_ci.sh ]; then
  bash scripts/bench_ci.sh
fi

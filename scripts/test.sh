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
# Twice: with the compiled core (medsettle/compiled.py), then interpreted.
# The interpreted pass runs the tests of what the compiled modules do:
# settling and reversing (with the Internet+ rules, agreements and
# prescriptions), the ledger store contract, clearing, verify, and the
# crash, fuzz, tamper and invariant tests. Tests of what they do not
# touch (auth, TLS, metrics, the gateway, docs, CLI help, examples, the
# load generator) run once, to keep CI well under its time budget.
# Arguments, if given, select the tests of both passes.
PURE_TESTS=(tests/unit tests/contract tests/crash
  tests/service/test_settle.py tests/service/test_fuzz.py tests/service/test_bounds_and_faults.py
  tests/service/test_writer_process.py tests/service/test_internet.py tests/service/test_internet_properties.py
  tests/service/test_internet_policy_rules.py tests/service/test_agreements.py tests/service/test_prescriptions.py
  tests/e2e/test_verify.py tests/e2e/test_clearing_cli.py tests/e2e/test_clearing_properties.py
  tests/e2e/test_writer_process_children.py)
echo "== tests, compiled core =="
run_pytest .venv/bin/python -m pytest "$@" || exit $?
echo "== tests, interpreted (MEDSETTLE_PURE=1) =="
if [ $# -gt 0 ]; then
  run_pytest env MEDSETTLE_PURE=1 .venv/bin/python -m pytest "$@" || exit $?
else
  run_pytest env MEDSETTLE_PURE=1 .venv/bin/python -m pytest -q "${PURE_TESTS[@]}" || exit $?
fi
set -e
if [ -f scripts/bench_ci.sh ]; then
  bash scripts/bench_ci.sh
fi

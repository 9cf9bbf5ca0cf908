#!/usr/bin/env bash
# Sets everything up, then runs every check: generated protobuf code current,
# buf lint, the whole test suite (unit, service, end-to-end), and a short
# load benchmark whose summary is printed (not asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --for-tests
bash scripts/check_protos.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
[ $rc -eq 0 ] || exit $rc
if [ -f scripts/bench_ci.sh ]; then
  bash scripts/bench_ci.sh
fi

#!/usr/bin/env bash
# Fails when the committed generated code differs from a fresh generation,
# or when buf lint finds a problem.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash scripts/gen_protos.sh "$tmp"
status=0
for f in "$tmp"/medsettle/v1/*; do
  name=$(basename "$f")
  if ! diff -q "$f" "protos/medsettle/v1/$name" >/dev/null 2>&1; then
    echo "generated code is stale: protos/medsettle/v1/$name (run scripts/gen_protos.sh)"
    status=1
  fi
done
.venv/bin/buf lint || status=1
[ $status -eq 0 ] && echo "protos: generated code current, buf lint clean"
exit $status

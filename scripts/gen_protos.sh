#!/usr/bin/env bash
# Regenerates the committed Python code and .pyi stubs from protos/.
# CI runs it and fails when the result differs from what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=protos
rm -f "$out"/medsettle/v1/*_pb2*.py "$out"/medsettle/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  protos/medsettle/v1/*.proto

#!/usr/bin/env bash
# Regenerates the committed Python code and .pyi stubs from protos/.
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: protos, in place)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=${1:-protos}
mkdir -p "$out/medsettle/v1"
rm -f "$out"/medsettle/v1/*_pb2*.py "$out"/medsettle/v1/*_pb2*.pyi
# protoc-gen-mypy is a script beside the interpreter
PATH="$(dirname "$PY"):$PATH" "$PY" -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  protos/medsettle/v1/*.proto 2> >(grep -v "^Writing mypy" >&2)

#!/usr/bin/env bash
# A py-spy flame graph (SVG) of the server and its writer process under
# `medsettle load`: the flame graphs of docs/measurements/ are made with it.
#   benchmarks/flamegraph.sh MODE OUT.svg [SECONDS]
# MODE: unary, stream, batch or http (one phase, no echo baseline);
# SECONDS of sampling (default 10) start once the load's warm-up is over.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?mode: unary, stream, batch or http}
out=${2:?output .svg}
seconds=${3:-10}
warmup_s=3
.venv/bin/medsettle load --mode "$mode" --no-echo --warmup "$warmup_s" --duration $((seconds + 4)) >"$out.load.txt" 2>&1 &
load=$!
trap 'kill $load 2>/dev/null || true' EXIT
server=""
for _ in $(seq 600); do  # the server starts after the load's reference data is written
  server=$(pgrep -P "$load" -f "medsettle serve" || true)
  [ -n "$server" ] && pgrep -f "medsettle: writer" >/dev/null && break
  sleep 0.1
done
[ -n "$server" ] || { echo "flamegraph: the load's server did not start" >&2; exit 1; }
sleep $((warmup_s + 1))
.venv/bin/py-spy record --pid "$server" --subprocesses --nonblocking --rate 100 --duration "$seconds" \
  --output "$out" >/dev/null
wait "$load"
trap - EXIT
grep -E "calls/s|settle/" "$out.load.txt" || true
rm -f "$out.load.txt"
echo "flamegraph: $out"

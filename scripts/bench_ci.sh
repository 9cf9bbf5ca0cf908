#!/usr/bin/env bash
# The short benchmark CI runs after the tests (scripts/test.sh): the
# micro-benchmarks with short rounds, then a short load run (echo baseline,
# unary Settle, SettleStream, SettleBatchStream and 2207 over the JSON gateway against a server process
# of its own on a fresh SQLite file). It prints the figures and writes them as JSON into
# var/bench/; it fails only if something crashes, never because it is slow.
# BENCH_LOAD_SECONDS sets the seconds per load phase (default 4; seven phases,
# each after a 1 s warm-up, and the gateway's: about 40 s with the server's start).
set -euo pipefail
cd "$(dirname "$0")/.."
out=var/bench
mkdir -p "$out"
echo "== micro-benchmarks (pytest-benchmark) =="
.venv/bin/python -m pytest -q -p no:cacheprovider benchmarks \
  --benchmark-max-time=0.2 --benchmark-columns=min,median,ops --benchmark-sort=name \
  --benchmark-json="$out/micro.json"
echo "== load: 64 unary calls in flight; 1024 stream items in flight, one or 64 bills per message; 64 HTTP calls in flight; echo baseline first =="
.venv/bin/medsettle load --mode unary,stream,batch,http --duration "${BENCH_LOAD_SECONDS:-4}" --warmup 1 \
  --json "$out/load.json"
echo "(full reports: $out/micro.json, $out/load.json)"

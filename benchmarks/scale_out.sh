#!/usr/bin/env bash
# Scale-out benchmark, in one run on one machine: `medsettle load` with the
# echo baseline against (1) one server on a fresh SQLite file, (2) one
# server on PostgreSQL, (3) two servers on PostgreSQL (a fresh database
# each, on one throwaway PostgreSQL server of its own, fsync on). Prints
# a table: settlements/s, ratio to echo, p50/p99, server CPU, database
# CPU and WAL bytes per settlement; keeps the JSON reports.
#
#   benchmarks/scale_out.sh [SECONDS_PER_PHASE] [MODES]    (default 8, unary,batch)
#
# On a small machine the servers, PostgreSQL and the generator share the
# cores: read the ratios and the CPU per settlement, not only calls/s.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
modes=${2:-unary,batch}
out=var/bench/scale-out
mkdir -p "$out"
. scripts/lib/postgres.sh
bindir=$(pg_bindir) || { echo "scale_out: no PostgreSQL server binaries; run scripts/setup.sh --for-tests as root" >&2; exit 1; }
home=$(mktemp -d "${TMPDIR:-/tmp}/medsettle-scale-out.XXXXXX")
stop() {
  pg_as_owner "$home" "$bindir/pg_ctl" -D "$home/pg" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$home"
}
trap stop EXIT
pg_throwaway_start "$bindir" "$home"
load=(.venv/bin/medsettle load --mode "$modes" --duration "$seconds" --warmup 1)

echo "== SQLite, one server ==" >&2
"${load[@]}" --json "$out/sqlite-1.json"
for servers in 1 2; do
  pg_as_owner "$home" "$bindir/createdb" -h "$home" -U medsettle "load$servers"
  echo "== PostgreSQL, $servers server(s) ==" >&2
  "${load[@]}" --db "postgresql:///load$servers?host=$home&user=medsettle" --servers "$servers" \
    --json "$out/postgresql-$servers.json"
done
.venv/bin/python - "$out" "$home" <<'EOF'
import json, sys
from pathlib import Path

import psycopg

out, home = Path(sys.argv[1]), sys.argv[2]
print(f"\n| ledger | servers | phase | calls/s | ratio to echo | p50 ms | p99 ms | server CPU ms | database CPU ms | WAL B |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in ("sqlite-1", "postgresql-1", "postgresql-2"):
    report = json.loads((out / f"{name}.json").read_text())
    ledger, servers = name.split("-")
    for p in report["phases"]:
        ratio = report["ratio_to_echo"].get(p["mode"]) if p["service"] == "settle" else None
        db = p.get("database", {})
        print(f"| {ledger} | {servers} | {p['service']} {p['mode']} | {p['calls_per_s']:,.0f} | "
              f"{'' if ratio is None else f'{ratio:.2f}'} | {p['latency_ms']['p50']:.0f} | {p['latency_ms']['p99']:.0f} | "
              f"{p['cpu_ms_per_call'].get('server', 0):.2f} | "
              f"{'' if 'cpu_ms_per_call' not in db else format(db['cpu_ms_per_call'], '.2f')} | "
              f"{'' if 'wal_bytes_per_call' not in db else format(db['wal_bytes_per_call'], ',.0f')} |")
# What a settlement occupies on disk (heap, indexes, TOAST) in the tables that grow with settlements.
GROWING = ("settlements", "journal_entries", "postings", "person_years", "visit_log")
for servers in (1, 2):
    with psycopg.connect(f"postgresql:///load{servers}?host={home}&user=medsettle") as conn:
        count = conn.execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
        size = sum(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (t,)).fetchone()[0] for t in GROWING)
    print(f"\nPostgreSQL, {servers} server(s): {count:,} settlements stored, {size / max(1, count):,.0f} bytes each "
          f"on disk ({', '.join(GROWING)}: heap, indexes, TOAST)")
print(f"\n(JSON reports in {out}/)")
EOF

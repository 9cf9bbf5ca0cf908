"""`medsettle load --db postgresql://... --servers 2`: two server processes
of its own on one PostgreSQL ledger, calls spread over both (a retry of the
previous request often reaches the other server), one report with each
server's share and the database's cost; the ledger holds exactly what the
report says was settled, once."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg


def test_two_own_servers_on_postgresql_settle_each_bill_once(pg_url, tmp_path):
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "-m", "medsettle", "load", "--db", pg_url, "--servers", "2", "--count", "200",
         "--persons", "300", "--concurrency", "8", "--stream-concurrency", "32", "--streams", "2",
         "--mode", "unary,batch", "--batch", "8", "--duplicates", "0.1", "--json", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert urlsplit(pg_url).password not in text + done.stdout + done.stderr
    report = json.loads(text)
    assert report["database"]["kind"] == "postgresql" and len(report["targets"]) == 2
    settled = 0
    for phase in report["phases"]:
        assert phase["calls_ok"] == 200 and phase["errors"] == {}, phase
        shares = [phase["by_target"][t]["calls_ok"] for t in report["targets"]]
        assert sum(shares) == 200 and min(shares) > 0
        if phase["mode"] == "unary":
            assert shares == [100, 100]  # in turn
        if phase["service"] == "settle":
            assert phase["database"]["wal_bytes_per_call"] > 0 and phase["database"]["cpu_ms_per_call"] > 0
            assert phase["by_kind"].get("duplicate", 0) > 0
            # Both servers' /metrics answered (summed): every settlement call went through a group commit.
            assert phase["writer"]["commands"] >= 200 and phase["writer"]["batches"] >= 2
            settled += phase["by_kind"]["settle"]
    with psycopg.connect(pg_url) as conn:
        stored, keys = conn.execute("SELECT COUNT(*), COUNT(DISTINCT (fixmedins_code, msgid)) FROM settlements").fetchone()
    # A retry, on either server, returned the first answer and stored nothing.
    assert stored == keys == settled

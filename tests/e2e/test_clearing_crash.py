"""A clearing run killed (SIGKILL) at any point leaves nothing half-written:
the clearing entry and the record of the run commit together or not at all,
and a later run clears the period exactly once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLEAR = [sys.executable, "-m", "medsettle", "clear", "--province", "44", "--period", "2026-10",
         "--clock", "2026-11-02T09:00:00+08:00", "--json"]


def clearing_state(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT COUNT(*) FROM clearing_runs").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM journal_entries WHERE kind = 'clearing'").fetchone()[0])


def test_a_killed_run_posts_nothing_or_everything_and_the_period_clears_once(tmp_path):
    db = tmp_path / "month.db"
    generated = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "clearing_bench.py"), "--settlements", "20000",
         "--agencies", "8", "--institutions", "200", "--db", str(db), "--generate-only"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stderr
    command = [*CLEAR, "--db", str(db), "--statement-dir", str(tmp_path / "s")]
    kills = 0
    for delay_s in (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        time.sleep(delay_s)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(30)
        runs, entries = clearing_state(db)
        assert runs == entries and runs <= 1  # together or not at all
        if runs:
            break
    assert kills >= 1
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == done.stdout
    assert clearing_state(db) == (1, 1)
    assert json.loads(done.stdout)["totals"]["setl_cnt"] == json.loads(generated.stdout)["setl_cnt"]

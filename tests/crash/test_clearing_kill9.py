"""The clearing run killed midway: `medsettle clear` on a generated month is
killed with SIGKILL at random moments within the time an uninterrupted run
takes; after each kill the journal verifies and the run is either wholly
there or not at all; the run that finally completes gives byte for byte the
statement an uninterrupted run on a copy of the same month gives, its
totals those of the generated month; running it once more prints the same
and posts nothing.

CI: CLEAR_KILLS (default 3) kills. Longer:
    CLEAR_KILLS=20 .venv/bin/python -m pytest tests/crash -m slow -s
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medsettle.ledger.verify import verify_database

ROOT = Path(__file__).resolve().parents[2]
CLEAR = [sys.executable, "-m", "medsettle", "clear", "--province", "44", "--period", "2026-10",
         "--clock", "2026-11-02T09:00:00+08:00", "--json"]


def clear(db: Path, statements: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLEAR, "--db", str(db), "--statement-dir", str(statements)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent)


def runs_and_entries(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT COUNT(*) FROM clearing_runs").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM journal_entries WHERE kind = 'clearing'").fetchone()[0])


def kill_clearing_until_done(tmp_path: Path, kills_wanted: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    db = tmp_path / "month.db"
    generated = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "clearing_bench.py"), "--settlements", "20000", "--agencies", "8",
         "--institutions", "200", "--db", str(db), "--generate-only"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stderr
    untouched = tmp_path / "untouched.db"
    shutil.copy(db, untouched)
    started = time.monotonic()
    reference = clear(untouched, tmp_path / "reference")
    reference_out, reference_err = reference.communicate(timeout=300)
    span_s = time.monotonic() - started
    assert reference.returncode == 0, reference_err

    kills = attempts = 0
    while kills < kills_wanted:
        attempts += 1
        process = clear(db, tmp_path / f"attempt-{attempts}")
        # past the interpreter's start-up, within what a whole run takes
        time.sleep(rng.uniform(0.35 * span_s, 0.95 * span_s))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=60)
        runs, entries = runs_and_entries(db)
        assert runs == entries <= 1, "the clearing entry and its run record commit together or not at all"
        report = verify_database(db)
        assert report.ok, (report.first_bad, report.balance_breaks)
        if runs:  # this attempt finished before its kill: the final run below is a re-run
            break
    final = clear(db, tmp_path / "final")
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert json.loads(out) == json.loads(reference_out)
    for name in ("statement.json", "statement.csv", "payment_instructions.csv", "statement.html"):
        assert (tmp_path / "final" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert json.loads(out)["totals"]["setl_cnt"] == json.loads(generated.stdout)["setl_cnt"]
    again = clear(db, tmp_path / "again")
    again_out, again_err = again.communicate(timeout=300)
    assert again.returncode == 0 and again_out == out, again_err  # a cleared period: the same statement
    assert runs_and_entries(db) == (1, 1)  # posted once, however often it ran
    assert verify_database(db).ok
    return {"kills": kills, "attempts": attempts}


def test_a_clearing_run_killed_midway_reruns_to_the_same_statement(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    figures = kill_clearing_until_done(tmp_path, int(os.environ.get("CLEAR_KILLS", "3")), seed)
    print("\nclearing crash figures:", json.dumps({"seed": seed, **figures}))
    assert figures["kills"] >= 1


@pytest.mark.slow
def test_clearing_kill9_long_form(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    figures = kill_clearing_until_done(tmp_path, int(os.environ.get("CLEAR_KILLS", "20")), seed)
    print("\nclearing crash figures:", json.dumps({"seed": seed, **figures}))

"""`medsettle demo` against a running server process: the demo's bills,
then again to the "next" server (here the same one), which must answer
each with the stored settlement; a server that cannot be reached is a
one-line error naming the target."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

from medsettle.client.demo import demo_institutions
from test_serve_process import start_server


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medsettle", "demo", *args], capture_output=True, text=True,
                          timeout=120)


def test_the_demo_played_twice_is_answered_from_the_ledger(tmp_path):
    process, target = start_server(tmp_path)
    try:
        db = str(tmp_path / "ledger.db")
        done = _demo("--db", db, "--target", target, "--target", target)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(f"medsettle demo against {target}") == 2
        assert f"{target} answered the 4 settlements and the reversal of {target} with the same setl_ids and " \
               "amounts: yes" in done.stdout
        with sqlite3.connect(db) as conn:  # the demo's credentials do not outlive it
            states = conn.execute("SELECT revoked_us IS NOT NULL, COUNT(*) FROM credentials WHERE label = 'demo' "
                                  "GROUP BY 1").fetchall()
        assert states == [(1, len(demo_institutions()) + 1)]  # and the operator's
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_a_server_that_does_not_answer_is_named(tmp_path):
    process, target = start_server(tmp_path)  # the ledger exists; the target given is another port
    try:
        done = _demo("--db", str(tmp_path / "ledger.db"), "--target", "127.0.0.1:1")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert done.returncode == 1
    assert "--target 127.0.0.1:1: UNAVAILABLE" in done.stderr and "Traceback" not in done.stderr

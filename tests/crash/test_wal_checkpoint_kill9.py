"""A SQLite ledger's writer killed with SIGKILL while its WAL is being
checkpointed (copied into the database file, and written again from its
start once past its bound) loses no commit it had returned from, and leaves
a file that passes integrity_check. The writer is a real process committing
as fast as it can, with the store's checkpoint interval set to 2 ms and its
WAL bound to 32 pages, so that many kills land inside a checkpoint or a WAL
restart (about a hundred checkpoints and a dozen restarts a second)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from medsettle.ledger.storage.sqlite import SqliteLedgerStore

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "5"))

# The child: commits rows of about 6 KB (several pages each) one a
# transaction, and prints each row's number once its commit has returned.
WRITER = """
import os, sys
from medsettle.ledger.storage import sqlite as sqlite_store
sqlite_store.CHECKPOINT_INTERVAL_S = 0.002
sqlite_store.WAL_BOUND_FRAMES = 32
store = sqlite_store.SqliteLedgerStore(sys.argv[1])
number = int(sys.argv[2])
while True:
    store.begin()
    store.writer_connection().execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                                      (f"row-{number}", os.urandom(3000).hex()))
    store.commit()
    sys.stdout.write(f"{number}\\n")
    sys.stdout.flush()
    number += 1
"""


def _stored(path: Path) -> set[int]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {int(key[4:]) for (key,) in conn.execute("SELECT key FROM meta WHERE key LIKE 'row-%'")}
    finally:
        conn.close()


def _run_and_kill(path: Path, first: int, rng: random.Random) -> list[int]:
    """Starts the writer, kills it after a while; the rows it acknowledged."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first)],
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    assert child.stdout is not None
    acked: list[int] = []
    try:
        while len(acked) < 100:  # started and committing
            line = child.stdout.readline()
            assert line, f"the writer ended early ({child.wait()})"
            acked.append(int(line))
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        acked.extend(int(line) for line in child.stdout)  # what it wrote before the kill
    finally:
        child.kill()
        child.wait()
    return acked


def test_a_writer_killed_during_checkpoints_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    SqliteLedgerStore(path).close()
    acked: set[int] = set()
    first = 0
    for _ in range(ROUNDS):
        round_acked = _run_and_kill(path, first, rng)
        acked.update(round_acked)
        stored = _stored(path)
        assert acked <= stored, f"acknowledged and lost: {sorted(acked - stored)[:10]}"
        first = max(stored) + 1
    assert len(acked) > ROUNDS * 100


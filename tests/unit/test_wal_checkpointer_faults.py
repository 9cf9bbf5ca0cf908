"""The WAL checkpointer of a SQLite ledger: its checkpoints sync what they
copy (a kill -9 test cannot see a skipped fsync: the operating system still
writes what a killed process left in its page cache), and when its own
connection cannot be opened at first (too many open files, say) it tries
again at its next round, so the WAL stays bounded, as it did when the
writer's commits checkpointed it."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from medsettle.ledger.storage import sqlite as sqlite_store
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

SQLITE_SYNCHRONOUS_FULL = 2
BOUND_FRAMES = 128
FRAME_BYTES = 4_096 + 24
COMMITS = 800  # rows of about 6 KB: about 3,700 frames (15 MB) unless checkpointed


def test_a_checkpointer_that_could_not_connect_at_first_still_keeps_the_wal_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(sqlite_store, "WAL_BOUND_FRAMES", BOUND_FRAMES)
    # no backoff here (test_wal_checkpointer_errors.py has it): the rows committed
    # while the refused rounds wait would otherwise count against the bound
    monkeypatch.setattr(sqlite_store.WalCheckpointer, "MAX_BACKOFF_S", 0.01)
    real_connect = sqlite_store.connect
    refusals = [3]

    def connect(path):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "wal-checkpointer" and refusals[0]:
            refusals[0] -= 1
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(path)

    monkeypatch.setattr(sqlite_store, "connect", connect)
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    largest = 0
    try:
        for number in range(COMMITS):
            store.begin()
            store.writer_connection().execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)", (f"row-{number}", os.urandom(3_000).hex()))
            store.commit()
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
        checkpointer = store.wal_checkpointer
        assert checkpointer is not None and refusals == [0]
        assert checkpointer.checkpoints > 0
    finally:
        store.close()
    assert largest < 8 * BOUND_FRAMES * FRAME_BYTES  # 4.2 MB


def test_checkpoints_sync_what_they_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """synchronous FULL on the checkpoint's connection: the WAL is synced
    before its frames are copied and the database file after, before the WAL
    may be written again from its start."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.005)
    seen: list[int] = []
    real_checkpoint = sqlite_store.WalCheckpointer.checkpoint

    def checkpoint(self: sqlite_store.WalCheckpointer, conn: sqlite3.Connection) -> None:
        seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])
        real_checkpoint(self, conn)

    monkeypatch.setattr(sqlite_store.WalCheckpointer, "checkpoint", checkpoint)
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    try:
        for number in range(3):
            store.begin()
            store.writer_connection().execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"row-{number}", "x"))
            store.commit()
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            time.sleep(0.005)
        assert store.writer_connection().execute("PRAGMA synchronous").fetchone()[0] == SQLITE_SYNCHRONOUS_FULL
    finally:
        store.close()
    assert seen and set(seen) == {SQLITE_SYNCHRONOUS_FULL}

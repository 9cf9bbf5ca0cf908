"""The WAL of a SQLite ledger is checkpointed by its own thread
(WalCheckpointer), not inside the writer's commits, and stays bounded: a
stream of commits reuses the file from its start, and a WAL that grew while
a reader held it back is emptied once the reader is gone."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from medsettle.ledger.storage import sqlite as sqlite_store
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

ROW_BYTES = 6_000  # a commit of one row: an overflow page, a leaf, perhaps an interior page


def _commit_rows(store: SqliteLedgerStore, first: int, count: int) -> None:
    for number in range(first, first + count):
        store.begin()
        store.writer_connection().execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)", (f"row-{number}", os.urandom(ROW_BYTES // 2).hex()))
        store.commit()


def _wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.005)


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


FRAME_BYTES = 4_096 + 24  # a page and its frame header
BOUND_FRAMES = 128
STREAM_COMMITS = 1_600  # about 7,400 frames


@pytest.fixture()
def fast_checkpoints(monkeypatch):
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(sqlite_store, "WAL_BOUND_FRAMES", BOUND_FRAMES)


def _rows(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'row-%'").fetchone()[0]


def test_the_writer_no_longer_checkpoints_and_the_wal_stays_bounded(tmp_path, fast_checkpoints) -> None:
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    try:
        _commit_rows(store, 0, 1)
        checkpointer = store.wal_checkpointer
        assert checkpointer is not None
        assert store.writer_connection().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        largest = 0
        for first in range(1, STREAM_COMMITS + 1, 10):  # a stream of commits, no pause
            _commit_rows(store, first, 10)
            largest = max(largest, _wal_bytes(path))
        assert checkpointer.last_error is None
        assert checkpointer.restarts > 0  # the WAL went past its bound and was written again from its start
        # Without the checkpointer the WAL would hold every commit's pages
        # (about 7,400 frames); with it, it is written again from its start
        # once past the bound, give or take the commits of a checkpoint's
        # time, which a loaded machine's slow syncs stretch.
        assert largest < 12 * BOUND_FRAMES * FRAME_BYTES < STREAM_COMMITS * ROW_BYTES
        assert _rows(store.writer_connection()) == 1 + STREAM_COMMITS
    finally:
        store.close()
    # what the checkpoints copied is in the database file itself
    assert not Path(f"{path}-wal").exists()  # the last connection's close checkpointed the rest
    conn = sqlite3.connect(path)
    assert _rows(conn) == 1 + STREAM_COMMITS
    conn.close()


def test_a_wal_grown_behind_a_reader_is_cut_back_once_the_reader_is_gone(
        tmp_path, fast_checkpoints, monkeypatch) -> None:
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        _commit_rows(store, 0, 1)
        checkpointer = store.wal_checkpointer
        assert checkpointer is not None
        reader.execute("BEGIN")
        assert _rows(reader) == 1
        # the reader's snapshot pins the WAL: PASSIVE checkpoints stop short, no RESTART is asked for
        for first in range(1, 201, 20):
            done = checkpointer.checkpoints
            _commit_rows(store, first, 20)
            _wait_for(lambda: checkpointer.checkpoints > done, "a checkpoint behind the reader")
        grown = _wal_bytes(path)
        assert grown > 4 * BOUND_FRAMES * FRAME_BYTES
        assert checkpointer.restarts == 0
        assert _rows(reader) == 1
        # one stopped short is tried again with no new commit, so the WAL is copied once the reader ends
        tried = checkpointer.checkpoints
        _wait_for(lambda: checkpointer.checkpoints >= tried + 2, "checkpoints tried again with no new commit")
        reader.execute("COMMIT")
        _wait_for(lambda: checkpointer.restart_wanted, "a PASSIVE checkpoint that copies the whole WAL",)
        _commit_rows(store, 1_000, 1)  # followed by the RESTART checkpoint
        assert checkpointer.restarts == 1
        _commit_rows(store, 1_001, 1)  # written from the WAL's start: the file is cut to the bound
        assert _wal_bytes(path) <= BOUND_FRAMES * FRAME_BYTES + 32
        assert _rows(reader) == 203
    finally:
        reader.close()
        store.close()


def test_close_stops_the_checkpointer_and_a_read_only_store_has_none(tmp_path) -> None:
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    _commit_rows(store, 0, 1)
    checkpointer = store.wal_checkpointer
    assert checkpointer is not None and checkpointer._thread.is_alive()
    store.close()
    assert not checkpointer._thread.is_alive()
    reading = SqliteLedgerStore(path, read_only=True)
    try:
        assert reading.wal_checkpointer is None
    finally:
        reading.close()

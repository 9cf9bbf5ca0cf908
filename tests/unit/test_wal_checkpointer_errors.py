"""The WAL checkpointer's thread outlives whatever a round raises (not only
SQLite's errors): the failure is counted, its cause kept, its connection
replaced, the round tried again after a wait that doubles up to a bound;
and it publishes its figures where the writer named (wal_figures)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medsettle.ledger.storage import sqlite as sqlite_store
from medsettle.ledger.storage import wal_figures
from medsettle.ledger.storage.sqlite import SqliteLedgerStore, WalCheckpointer
from medsettle.ledger.storage.wal_figures import WalFigures, WalState

BOUND_FRAMES = 128
FRAME_BYTES = 4_096 + 24
COMMITS = 800  # rows of about 6 KB: about 3,700 frames (15 MB) unless checkpointed


def _wait_for(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.005)


def _commit_rows(store: SqliteLedgerStore, first: int, count: int) -> None:
    for number in range(first, first + count):
        store.begin()
        store.writer_connection().execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)", (f"row-{number}", os.urandom(3_000).hex()))
        store.commit()


class FaultyConnection:
    """The checkpointer's connection, whose PASSIVE checkpoints raise `fault` while `failing` is set."""

    def __init__(self, conn: sqlite3.Connection, failing: threading.Event, fault: Exception) -> None:
        self.conn, self.failing, self.fault = conn, failing, fault
        self.closed = False

    def execute(self, sql: str, *args: Any) -> Any:
        if self.failing.is_set() and "wal_checkpoint" in sql:
            raise self.fault
        return self.conn.execute(sql, *args)

    def close(self) -> None:
        self.closed = True
        self.conn.close()


@pytest.fixture()
def faulty_checkpoints(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The checkpointer thread's connections raise a RuntimeError (not an
    sqlite3.Error) at each checkpoint while the event it yields is set."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(sqlite_store, "WAL_BOUND_FRAMES", BOUND_FRAMES)
    monkeypatch.setattr(WalCheckpointer, "MAX_BACKOFF_S", 0.05)
    real_connect = sqlite_store.connect
    failing = threading.Event()
    opened: list[FaultyConnection] = []

    def connect(path):  # type: ignore[no-untyped-def]
        conn = real_connect(path)
        if threading.current_thread().name != "wal-checkpointer":
            return conn
        opened.append(FaultyConnection(conn, failing, RuntimeError("injected fault")))
        return opened[-1]

    monkeypatch.setattr(sqlite_store, "connect", connect)
    failing.set()
    return failing, opened


def test_a_round_that_raises_anything_is_counted_and_tried_again_and_the_wal_stays_bounded(
        tmp_path: Path, faulty_checkpoints) -> None:
    failing, opened = faulty_checkpoints
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    largest = 0
    try:
        _commit_rows(store, 0, 1)
        checkpointer = store.wal_checkpointer
        assert checkpointer is not None
        _wait_for(lambda: checkpointer.failures >= 3, "three failed rounds")
        assert checkpointer.last_error == "RuntimeError: injected fault"
        assert checkpointer.failing_since_s > 0
        assert checkpointer._thread.is_alive()
        # each failed round let go of its connection: the next round opened another
        assert len(opened) >= 3 and all(conn.closed for conn in opened[:-1])
        failing.clear()
        for first in range(1, COMMITS + 1, 10):
            _commit_rows(store, first, 10)
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
        _wait_for(lambda: checkpointer.last_error is None, "a round that succeeds")
        assert checkpointer.checkpoints > 0 and checkpointer.restarts > 0
        assert checkpointer.failing_since_s == 0.0
        assert checkpointer.last_failure == "RuntimeError: injected fault"  # kept for the logs
    finally:
        store.close()
    assert largest < 12 * BOUND_FRAMES * FRAME_BYTES  # about 7,400 frames unchecked


class RecordingEvent(threading.Event):
    """A stop event that records how long each wait was asked to be, and waits only briefly."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout if timeout is not None else -1.0)
        return super().wait(0.002)


def _wal_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()


def test_the_wait_after_failed_rounds_doubles_up_to_its_bound_and_is_the_interval_again_after_a_success(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.db"
    _wal_file(path)
    refusals = [7]
    real_connect = sqlite_store.connect

    def connect(conn_path):  # type: ignore[no-untyped-def]
        if refusals[0]:
            refusals[0] -= 1
            raise OSError("too many open files")  # not an sqlite3.Error
        return real_connect(conn_path)

    monkeypatch.setattr(sqlite_store, "connect", connect)
    monkeypatch.setattr(sqlite_store, "threading", SimpleNamespace(
        Event=RecordingEvent, Thread=threading.Thread, current_thread=threading.current_thread))
    checkpointer = WalCheckpointer(str(path), interval_s=0.1, bound_frames=BOUND_FRAMES)
    try:
        _wait_for(lambda: len(checkpointer._stop.waits) >= 10, "ten rounds")
    finally:
        checkpointer.stop()
    assert checkpointer.failures == 7 and checkpointer.last_error is None
    assert checkpointer.last_failure == "OSError: too many open files"
    waits = checkpointer._stop.waits[:10]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 0.1, 0.1])


def test_the_checkpointer_publishes_its_figures_where_the_writer_named_and_a_next_one_adds_to_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(sqlite_store, "WAL_BOUND_FRAMES", BOUND_FRAMES)
    path = tmp_path / "ledger.db"
    figures = WalFigures()
    wal_figures.publish_checkpoints(str(path), figures)
    try:
        store = SqliteLedgerStore(path)
        other = SqliteLedgerStore(path)  # another store on the file: publishes nothing
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            _commit_rows(store, 0, 1)
            _commit_rows(other, 1_000, 1)
            assert other.wal_checkpointer is not None and other.wal_checkpointer._figures is None
            _wait_for(lambda: figures.read().checkpoints >= 1, "a published checkpoint")
            reader.execute("BEGIN")
            reader.execute("SELECT COUNT(*) FROM meta").fetchone()
            _commit_rows(store, 1, 400)  # behind the reader: far beyond 4 times the bound (512 frames)
            _wait_for(lambda: figures.read().held_back_since_s > 0, "the WAL held back")
            held = figures.read()
            assert held.started and held.bound_frames == BOUND_FRAMES and held.failures == 0
            assert held.wal_frames > 4 * BOUND_FRAMES and 0 < held.uncopied_frames <= held.wal_frames
            assert held.copied_at_s < held.held_back_since_s <= time.time()
            reader.execute("COMMIT")
            _wait_for(lambda: figures.read().uncopied_frames == 0, "the WAL copied once the reader ended")
            assert figures.read().held_back_since_s == 0.0
            counted = figures.read().checkpoints
        finally:
            reader.close()
            other.close()
            store.close()
        # the next writer on the file (a writer process replaced) adds to what this one counted
        again = SqliteLedgerStore(path)
        try:
            _commit_rows(again, 2_000, 1)
            _wait_for(lambda: figures.read().checkpoints > counted, "the next writer's checkpoint")
        finally:
            again.close()
    finally:
        wal_figures.withdraw(str(path), figures)
        figures.close()


def test_figures_read_back_as_published_and_a_long_failure_is_cut_at_a_character() -> None:
    figures = WalFigures()
    try:
        assert figures.read() == WalState()
        state = WalState(checkpoints=5, failures=2, restarts=1, wal_frames=900, uncopied_frames=40,
                         bound_frames=4_096, started=True, copied_at_s=1.5, failing_since_s=2.5,
                         held_back_since_s=3.5, last_failure="磁盘已满 " * 100)
        figures.publish(state)
        back = figures.read()
        assert back.last_failure == ("磁盘已满 " * 100)[:len(back.last_failure)]
        assert 0 < len(back.last_failure.encode("utf-8")) <= wal_figures.ERROR_BYTES
        assert (back.checkpoints, back.failures, back.restarts, back.wal_frames, back.uncopied_frames,
                back.bound_frames, back.started, back.copied_at_s, back.failing_since_s, back.held_back_since_s) == (
                    5, 2, 1, 900, 40, 4_096, True, 1.5, 2.5, 3.5)
        shared = WalFigures(os.dup(figures.fd))  # as a child sees it
        assert shared.read() == back
        shared.close()
    finally:
        figures.close()


class BusyConnection:
    """A connection whose PASSIVE checkpoint meets another checkpoint (the writer's RESTART)."""

    def execute(self, sql: str) -> Any:
        return SimpleNamespace(fetchone=lambda: (1, -1, -1))


def test_a_checkpoint_that_met_the_writers_restart_is_tried_again_and_not_taken_for_one_that_copied_all(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _wal_file(path)
    checkpointer = WalCheckpointer(str(path), interval_s=60.0, bound_frames=BOUND_FRAMES)
    try:
        checkpointer.wal_frames, checkpointer.copied_at_s = 700, 1.0
        assert checkpointer.checkpoint(BusyConnection()) is False  # type: ignore[arg-type]
        assert (checkpointer.checkpoints, checkpointer.wal_frames, checkpointer.copied_at_s) == (0, 700, 1.0)
    finally:
        checkpointer.stop()

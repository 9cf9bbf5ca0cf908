"""SqliteLedgerStore.close() closes every connection it opened: the writer's
and each thread's read connection."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from medsettle.ledger.storage.sqlite import SqliteLedgerStore


def test_close_closes_the_read_connections_of_every_thread(tmp_path) -> None:
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    all_started = threading.Barrier(4)

    def open_reader(_: int) -> sqlite3.Connection:
        all_started.wait(timeout=10)  # four tasks on four distinct threads
        return store.reader()

    with ThreadPoolExecutor(4) as pool:
        readers = set(pool.map(open_reader, range(4)))
    readers.add(store.reader())
    assert len(readers) == 5
    for conn in readers:
        assert conn.execute("SELECT COUNT(*) FROM settlements").fetchone() == (0,)
    store.close()
    for conn in readers:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.reference_body()  # the writer's connection


def test_close_twice_and_close_without_readers_are_fine(tmp_path) -> None:
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    store.close()
    store.close()

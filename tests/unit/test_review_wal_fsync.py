"""Review: the pipelined sync (ledger/storage/wal_sync.py) must reach the
disk. A sync that counted itself but never called the kernel would pass
every test that holds or counts syncs, while answers went out before their
settlements were durable (a killed process loses nothing: only a power
loss would show it). Here the kernel call itself is watched: after a
commit, WalFile.sync flushes the descriptor of the very -wal file that
holds the commit, and again the new one once SQLite made a new WAL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medsettle.ledger.storage import wal_sync
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.wal_sync import pipelined_wal


def _commit_row(store: SqliteLedgerStore, key: str) -> None:
    store.begin()
    store.writer_connection().execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, "x"))
    store.commit()


def test_the_sync_flushes_the_wal_file_that_holds_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []  # the inode of each descriptor flushed
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        flushed.append(os.fstat(fd).st_ino)
        real_fdatasync(fd)

    monkeypatch.setattr(wal_sync.os, "fdatasync", fdatasync)
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    wal = pipelined_wal(store)
    assert wal is not None
    try:
        _commit_row(store, "review-1")
        wal.sync()
        first = os.stat(wal.path).st_ino
        assert flushed == [first]
        store.close()  # the last connection: SQLite deletes the WAL
        store = SqliteLedgerStore(tmp_path / "ledger.db")
        _commit_row(store, "review-2")  # in a new -wal file
        wal.sync()
        assert flushed == [first, os.stat(wal.path).st_ino] and flushed[1] != first
    finally:
        wal.close()
        store.close()

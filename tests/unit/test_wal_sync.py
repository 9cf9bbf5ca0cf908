"""ledger/storage/wal_sync.py: the WAL file synced is the one at the path
(SQLite deletes it when its last connection closes and makes a new one);
answers are written in order, after a sync begun after they were handed
over, one sync serving every batch that waited; a failed sync writes none."""

from __future__ import annotations

import os
import sqlite3
import threading

from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.wal_sync import AnswersAfterSync, WalFile, pipelined_wal

WAIT_S = 20.0


def _wal_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return conn


def test_the_wal_synced_is_the_file_at_the_path_even_after_sqlite_made_a_new_one(tmp_path):
    db = str(tmp_path / "ledger.db")
    wal = WalFile(db)
    wal.sync()  # no WAL yet: nothing to sync
    assert (wal.opened, wal.syncs) == (0, 0)

    conn = _wal_connection(db)
    conn.execute("INSERT INTO t VALUES (1)")
    first = os.stat(wal.path).st_ino
    wal.sync()
    wal.sync()
    assert (wal.opened, wal.syncs) == (1, 2)

    conn.close()  # the last connection: SQLite checkpoints and deletes the WAL
    assert not os.path.exists(wal.path)
    conn = _wal_connection(db)  # WalFile's descriptor keeps the old inode: the new file has another
    conn.execute("INSERT INTO t VALUES (2)")
    assert os.stat(wal.path).st_ino != first
    wal.sync()
    assert (wal.opened, wal.syncs) == (2, 3)
    assert os.fstat(wal._fd).st_ino == os.stat(wal.path).st_ino  # type: ignore[arg-type]
    wal.close()
    conn.close()


def test_a_sqlite_ledger_is_committed_at_normal_with_its_wal_synced_by_the_writer(tmp_path):
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    assert store.writer_connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, as opened
    wal = pipelined_wal(store)
    assert wal is not None and wal.path == str(tmp_path / "ledger.db") + "-wal"
    assert store.writer_connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()
    assert pipelined_wal(object()) is None

    class PostgresLike(SqliteLedgerStore):  # as PostgresLedgerStore is: its commit is durable when it returns
        pass

    other = PostgresLike(tmp_path / "other.db")
    assert pipelined_wal(other) is None
    assert other.writer_connection().execute("PRAGMA synchronous").fetchone()[0] == 2
    other.close()


def test_answers_go_in_order_after_a_sync_begun_after_they_were_handed_over():
    events: list[str] = []
    first_sync, release = threading.Event(), threading.Event()
    written = threading.Event()

    def sync() -> None:
        events.append("sync")
        first_sync.set()
        assert release.wait(WAIT_S)

    def write(data: bytes) -> None:
        events.append(data.decode())
        if data.endswith(b"c"):
            written.set()

    answers = AnswersAfterSync(sync, write, failed=lambda error: events.append(f"failed: {error}"))
    answers.settled(b"a")
    assert first_sync.wait(WAIT_S)
    answers.settled(b"b")  # during a's sync: it needs a sync of its own
    answers.settled(b"c")
    assert events == ["sync"]  # nothing written while the sync is held
    release.set()
    assert written.wait(WAIT_S)
    answers.close()
    assert events == ["sync", "a", "sync", "bc"]  # one sync for b and c, begun after both were handed over


def test_a_failed_sync_writes_no_answer_and_says_so():
    failures: list[OSError] = []
    writes: list[bytes] = []

    def sync() -> None:
        raise OSError(5, "Input/output error")

    answers = AnswersAfterSync(sync, writes.append, failures.append)
    answers.settled(b"a")
    answers._thread.join(WAIT_S)  # the thread ends at the failure
    assert not answers._thread.is_alive()
    assert writes == [] and [f.errno for f in failures] == [5]


def test_a_ledger_not_in_wal_mode_keeps_its_commits_synced_by_sqlite(tmp_path):
    """Syncing a -wal file that does not exist would make no commit durable:
    a ledger in another journal mode is left at synchronous=FULL."""
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    conn = store.writer_connection()
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    assert pipelined_wal(store) is None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()

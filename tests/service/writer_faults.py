"""Faults of the disk and of SQLite inside a real writer process, each on
while a trigger file exists beside the ledger. A test puts one of the
serve_with_* functions where WriterProcess finds its child's target, so the
product carries no hook: the child, a fresh interpreter, imports this
module (by the name pickle gives), installs the fault in itself, then runs
the real writer loop. install_checkpoint_fault also serves a writer thread
(installed in the test's own process)."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

CHECKPOINT_BACKOFF_S = 0.2  # failed checkpoint rounds follow each other this fast under the fault


def fsync_trigger(db_path: str | Path) -> Path:
    return Path(f"{db_path}.fail-fsync")


def checkpoint_trigger(db_path: str | Path) -> Path:
    return Path(f"{db_path}.fail-checkpoints")


def serve_with_failing_fsync(commands_in: Any, answers_out: Any, db_path: str, *rest: Any) -> None:
    """The writer loop, its fdatasync answering EIO (as a failing disk) while the trigger exists."""
    from medsettle.ledger.storage import writer_process

    trigger = fsync_trigger(db_path)
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        if trigger.exists():
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fdatasync(fd)

    os.fdatasync = fdatasync  # the WAL's sync (wal_sync.WalFile); the fence's marker uses fsync
    writer_process._serve_batches(commands_in, answers_out, db_path, *rest)


def install_checkpoint_fault(db_path: str | Path, set_attribute: Any = setattr) -> None:
    """While the trigger exists, the checkpointer thread's connections cannot
    be opened (as with too many open files); the writer's own are not touched.
    set_attribute: a test's monkeypatch.setattr, undone after it."""
    from medsettle.ledger.storage import sqlite as sqlite_store

    trigger = checkpoint_trigger(db_path)
    set_attribute(sqlite_store.WalCheckpointer, "MAX_BACKOFF_S", CHECKPOINT_BACKOFF_S)
    real_connect = sqlite_store.connect

    def connect(path):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "wal-checkpointer" and trigger.exists():
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(path)

    set_attribute(sqlite_store, "connect", connect)


def serve_with_failing_checkpoints(commands_in: Any, answers_out: Any, db_path: str, *rest: Any) -> None:
    """The writer loop, its WAL checkpointer failing while the trigger exists."""
    from medsettle.ledger.storage import writer_process

    install_checkpoint_fault(db_path)
    writer_process._serve_batches(commands_in, answers_out, db_path, *rest)

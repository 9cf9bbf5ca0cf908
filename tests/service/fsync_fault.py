"""A real writer process whose fsync of the WAL fails (EIO, as a failing
disk says) once a trigger file exists beside the ledger. The test puts
serve_with_failing_fsync where WriterProcess finds its child's target, so
the product carries no hook: the child, a fresh interpreter, imports this
module (by the name pickle gives), installs the fault in its own `os`,
then runs the real writer loop."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any


def trigger_path(db_path: str | Path) -> Path:
    return Path(f"{db_path}.fail-fsync")


def serve_with_failing_fsync(commands_in: Any, answers_out: Any, db_path: str, *rest: Any) -> None:
    from medsettle.ledger.storage import writer_process

    trigger = trigger_path(db_path)
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        if trigger.exists():
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fdatasync(fd)

    os.fdatasync = fdatasync  # the WAL's sync (wal_sync.WalFile); the fence's marker uses fsync
    writer_process._serve_batches(commands_in, answers_out, db_path, *rest)

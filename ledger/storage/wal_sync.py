"""The writer process's fsync off its settling thread (pipelined sync).

On SQLite the writer process commits at synchronous=NORMAL: in WAL mode a
commit then writes its frames to the `-wal` file and returns without an
fsync. A thread of its own (AnswersAfterSync) then fsyncs that file and
only after it writes the batch's answers to the gRPC process. An fsync
begun after a commit returned covers that commit's frames, so no caller is
answered before its settlement is on disk, as with synchronous=FULL; but
the writer settles the next batch while the fsync runs (about half a
batch's time on a disk with millisecond syncs), and one fsync covers every
batch committed while the one before ran.

Until its fsync a batch's rows are committed and visible to readers of the
ledger (their transactions start after the commit) but not yet durable: a
power loss then loses them, though a reader saw them, and their callers,
never answered, retry with the same msgid (docs/operations.md). A killed
writer process loses nothing committed: the operating system still writes
what it left in the page cache.

The file is checked at each sync: SQLite deletes the WAL when its last
connection closes and creates a new one at the next write, so a sync that
finds another file at the path opens that one (and syncs its directory,
where a new file's name must be durable too).

A sync that fails fences the ledger (ledger/storage/fence.py): the writer
process writes the marker and exits with SYNC_FAILED_EXIT, and the gRPC
process starts no replacement on the file."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

from medsettle.ledger.storage.fence import fence
from medsettle.ledger.storage.phase_trace import tracer
from medsettle.ledger.storage.sync_path import sync_path

SYNC_FAILED_EXIT = 75  # the writer process's exit status after a failed fsync: the ledger is fenced


class WalFile:
    """The `-wal` file of a SQLite database, for fsyncs of its own."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        # SQLite resolves a symlink and keeps the WAL beside the file it names
        self.path = os.path.realpath(db_path) + "-wal"
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self.opened = 0  # files opened: more than one when SQLite made a new WAL
        self.syncs = 0

    def sync(self) -> None:
        """Every commit that returned before this call is on disk when it returns
        (OSError if the disk said no)."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:  # no commit has written a WAL yet: nothing to sync
            return
        if (found.st_dev, found.st_ino) != self._identity:
            self._open()
        assert self._fd is not None
        os.fdatasync(self._fd)  # what SQLite's own synchronous=FULL calls on Linux
        self.syncs += 1

    def _open(self) -> None:
        self.close()
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        opened = os.fstat(fd)
        self._fd, self._identity = fd, (opened.st_dev, opened.st_ino)
        self.opened += 1
        sync_path(os.path.dirname(os.path.abspath(self.path)))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._identity = None


def pipelined_wal(store: Any) -> WalFile | None:
    """The WAL to sync after each commit if `store` is a SQLite ledger, its
    writer connection now at synchronous=NORMAL; None for other stores
    (PostgreSQL's commit is durable when it returns)."""
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    # exactly SQLite's store: PostgreSQL's subclasses it, and a subclass may commit otherwise
    if type(store) is not SqliteLedgerStore or store.read_only:
        return None
    connection = store.writer_connection()
    # Only a WAL's commits can be made durable by syncing the -wal file: a
    # ledger SQLite kept in another journal mode keeps synchronous=FULL.
    if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        return None
    connection.execute("PRAGMA synchronous = NORMAL")
    return WalFile(store.path)


class AnswersAfterSync:
    """Writes each batch's answers, in the order given, with `write` once a
    `sync` begun after the batch was handed over has returned. One thread;
    one sync for every batch handed over while the last one ran. A sync
    that fails (whatever it raises) calls `failed`, which must end the
    process: what the sync covered may be lost (stop_fenced: the gRPC
    process then tells those callers to retry with the same msgid, and
    starts no other writer on the fenced ledger)."""

    def __init__(self, sync: Callable[[], None], write: Callable[[bytes], None],
                 failed: Callable[[Exception], None]) -> None:
        self._sync = sync
        self._write = write
        self._failed = failed
        self._pending: list[bytes] = []
        self._wake = threading.Condition()
        self._closing = False
        self.stopped = False  # the answers' pipe broke: the gRPC process is gone
        self._trace = tracer("syncs", ("began", "synced", "batches"))
        self._thread = threading.Thread(target=self._run, name="wal-syncer", daemon=True)
        self._thread.start()

    def settled(self, answers: bytes) -> None:
        """A batch's answers (a whole frame), its commit returned."""
        with self._wake:
            self._pending.append(answers)
            self._wake.notify()

    def close(self) -> None:
        """Returns once every answer handed over is written."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        trace = self._trace
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending:
                    return
                answers, self._pending = self._pending, []
            began = trace.clock() if trace is not None else 0.0
            try:
                self._sync()
            except Exception as error:  # any kind: a syncer that ended would leave every later answer unwritten
                self._failed(error)  # ends the process (stop_fenced); the answers are never written
                return
            if trace is not None:
                trace.add(began, trace.clock(), len(answers))
            try:
                self._write(b"".join(answers))
            except BrokenPipeError:
                self.stopped = True
                return


def stop_fenced(db_path: str) -> Callable[[Exception], None]:
    """The writer process's `failed` for AnswersAfterSync: fences the ledger
    at db_path (its marker written durably if the disk still takes it: the
    gRPC process writes it otherwise), then stops the process."""

    def stop(error: Exception) -> None:
        why = f"the fsync of its WAL failed ({type(error).__name__}: {error})"
        try:
            marker = f"marker {fence(db_path, why)}"
        except OSError as marker_error:
            marker = f"its marker could not be written ({marker_error})"
        try:
            print(f"medsettle writer: {why}; the ledger is fenced, {marker}; stopping", file=sys.stderr, flush=True)
        finally:  # a broken stderr must not leave the process settling on without its syncer
            os._exit(SYNC_FAILED_EXIT)

    return stop

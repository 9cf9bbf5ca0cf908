"""The writer's work in a process of its own (`medsettle serve
--writer-process`): the group-commit writer thread hands each batch to a
child process over a pipe and waits for its outcomes, so the split, the
rules, the postings and the SQLite writes run under the child's GIL, not
the one the gRPC event loop needs.

Durability is the child's commit, as in the thread: the child answers a
batch only after its COMMIT returned. If the child dies mid-batch, the
batch's callers are told to retry with the same msgid (the batch may or may
not have been committed; idempotency makes the retry safe) and a new child
is started on the same database."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

from medsettle.ledger.clock import Clock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.writer import batch_failure

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_READY = "ready"


def _serve_batches(conn: Connection, db_path: str, clock: Clock) -> None:
    """The child: opens the ledger, then runs batch after batch until told to stop."""
    import signal

    # Ctrl-C reaches the whole process group: the parent drains, then stops the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.settlement.process import SettlementProcessor
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    store = SqliteLedgerStore(db_path)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    conn.send(_READY)
    try:
        while (commands := conn.recv()) is not None:
            try:
                outcomes = processor.run_batch(commands)
            except Exception as error:  # as on the writer thread: the batch fails, the writer lives
                store.rollback()
                outcomes = [batch_failure(error)] * len(commands)
            conn.send(outcomes)
    except EOFError:  # the parent is gone
        pass
    finally:
        store.close()


class WriterProcess:
    """A BatchProcessor (ledger/storage/writer.py) whose batches run in a child process."""

    def __init__(self, db_path: str | Path, clock: Clock) -> None:
        # spawn, not fork: the parent runs gRPC threads, which must not be forked.
        self._context = multiprocessing.get_context("spawn")
        self._db_path = str(db_path)
        self._clock = clock  # the child gets a copy: a clock moved later in the parent is not seen
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self._conn, child_end = self._context.Pipe()
        self._child = self._context.Process(
            target=_serve_batches, args=(child_end, self._db_path, self._clock), name="medsettle-writer", daemon=True
        )
        self._child.start()
        child_end.close()
        if not self._conn.poll(START_TIMEOUT_S) or self._conn.recv() != _READY:
            self._child.kill()
            raise RuntimeError(f"the writer process did not start within {START_TIMEOUT_S:.0f} s")

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def run_batch(self, commands: Sequence[Any]) -> list[Any]:
        try:
            self._conn.send(list(commands))
            outcomes: list[Any] = self._conn.recv()
        except (EOFError, OSError):
            self._restart()
            failure = Refused(Reason.STORAGE_UNAVAILABLE,
                              "the writer process stopped during this write; retry with the same msgid")
            return [failure] * len(commands)
        assert len(outcomes) == len(commands), "one outcome per command"
        return outcomes

    def _restart(self) -> None:
        self._child.join(1.0)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()
        self._conn.close()
        self.restarts += 1
        self._start()

    def close(self) -> None:
        """Stops the child after the batch it is running (called once the writer thread has stopped)."""
        try:
            self._conn.send(None)
        except OSError:
            pass
        self._child.join(STOP_TIMEOUT_S)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()
        self._conn.close()

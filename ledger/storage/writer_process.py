"""The writer's work in a process of its own (`medsettle serve
--writer-process`): the group-commit writer hands each batch of write
requests, as the bytes gRPC received, to a child process over a pipe and
an answer thread waits for the answers' bytes (server/wire.py), so the
parsing, validation, split, rules, postings, SQLite writes and result
messages run under the child's GIL, not the one the gRPC event loop needs.

Durability is the child's commit, as in the thread: the child answers a
batch only after its COMMIT returned. If the child dies mid-batch, the
batch's callers are told to retry with the same msgid (the batch may or may
not have been committed; idempotency makes the retry safe) and a new child
is started on the same database."""

from __future__ import annotations

import math
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Sequence

from medsettle.ledger.clock import Clock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.child_process import ChildProcesses
from medsettle.server import wire

START_TIMEOUT_S = 60.0
START_POLL_S = 0.1  # how often a start being waited for looks at the close deadline
# Once the server closes, a replacement child may still start for this long
# (a start takes about a second), so the drain commits what is queued; after
# it no child is started and one being started is given up.
CLOSE_START_GRACE_S = 10.0
STOP_TIMEOUT_S = 30.0
_CLOSING = "the server is closing; retry with the same msgid"
_READY = b"ready"


def _serve_batches(commands_in: Connection, outcomes_out: Connection, db_path: str, clock: Clock,
                   ecert_key: bytes | None) -> None:
    """The child: opens the ledger, then answers batch after batch of write
    requests (server/wire.py bodies), in the order sent, until an empty
    body says stop."""
    import signal

    # Ctrl-C reaches the whole process group: the parent drains, then stops the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.settlement.process import SettlementProcessor
    from medsettle.ledger.storage.backends import open_ledger
    from medsettle.server.writes import WriteRequests

    store = open_ledger(db_path)
    requests = WriteRequests(SettlementProcessor(store, open_reference(store, clock), clock), clock, ecert_key,
                             store.rollback)
    outcomes_out.send_bytes(_READY)
    try:
        while body := commands_in.recv_bytes():
            outcomes_out.send_bytes(requests.run_body(body))
    except (EOFError, BrokenPipeError):  # the parent is gone
        pass
    finally:
        store.close()


class _Closing(Exception):
    """A child is not started, or one being started is given up: the server closes."""


def _lost(count: int, why: str = "the writer process stopped during this write; retry with the same msgid") -> list[bytes]:
    return [wire.refused(Refused(Reason.STORAGE_UNAVAILABLE, why))] * count


class WriterProcess:
    """A PipelinedProcessor (ledger/storage/writer.py) whose batches run in a
    child process. Commands and outcomes travel on two one-way pipes, so the
    writer thread sends batch N+1 while the answer thread waits for batch N.

    A child that dies fails every batch sent to it and not yet answered (each
    may or may not have been committed) and is replaced; `generation` counts
    children, so a batch sent to a dead one is never waited for on its
    successor's pipe."""

    def __init__(self, db_path: str | Path, clock: Clock, ecert_key: bytes | None = None) -> None:
        # A fresh interpreter, not fork: the parent runs gRPC threads, which
        # must not be forked; and not multiprocessing's spawn, whose resource
        # tracker (a second child) would serve nothing here.
        self._context = ChildProcesses()
        self._db_path = str(db_path)
        self._clock = clock  # the child gets a copy: a clock moved later in the parent is not seen
        self._ecert_key = ecert_key
        self._lock = threading.Lock()  # the child and its pipes, swapped by a restart
        self._generation = 0
        self.restarts = 0  # children started to replace a dead one
        self.restart_failures = 0  # tries to replace one that failed (down says why)
        self.down: str | None = None  # why the last restart failed, until one succeeds
        self.starting = False  # a child is being started to replace a dead one: writes wait meanwhile
        self._closed = False  # set by close(): no child is started after it
        self._no_start_after = math.inf  # monotonic time from which no child is started (the server closes)
        self._start()

    def _start(self) -> None:
        commands_in, self._commands = self._context.Pipe(duplex=False)
        self._outcomes, outcomes_out = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=_serve_batches, args=(commands_in, outcomes_out, self._db_path, self._clock, self._ecert_key),
            name="medsettle: writer", daemon=True,
        )
        try:
            child.start()
        finally:  # the parent keeps only its own ends: a dead child is then EOF/EPIPE, never a hang
            commands_in.close()
            outcomes_out.close()
        # Only a started child replaces the last one: a start that raised (no
        # fork: EAGAIN, EMFILE) leaves one that the next restart can join.
        self._child = child
        if not self._ready():
            exited = not self._child.is_alive()
            self._child.kill()
            self._child.join()
            if self._past_close_deadline():
                raise _Closing()
            raise RuntimeError(f"the writer process exited while starting (exit code {self._child.exitcode})" if exited
                               else f"the writer process did not start within {START_TIMEOUT_S:.0f} s")

    def _past_close_deadline(self) -> bool:
        return time.monotonic() >= self._no_start_after

    def _ready(self) -> bool:
        """Whether the child said it is ready, within START_TIMEOUT_S and the close deadline."""
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not self._past_close_deadline():
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    return False
                if self._outcomes.poll(min(remaining_s, START_POLL_S)):
                    return bool(self._outcomes.recv_bytes() == _READY)
        except (EOFError, OSError):  # the child died while starting
            pass
        return False

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def send_batch(self, commands: Sequence[wire.Write]) -> Callable[[], list[bytes]]:
        """Sends a batch of write requests; the call returned waits for their answers."""
        with self._lock:
            generation, pipe = self._generation, self._commands
        try:
            pipe.send_bytes(wire.batch_body(commands))
        except OSError:  # the child is gone (or was just replaced): nothing of this batch reached it
            return lambda: self._restarted(generation, len(commands))
        return lambda: self._receive(generation, len(commands))

    def run_batch(self, commands: Sequence[wire.Write]) -> list[bytes]:
        return self.send_batch(commands)()

    def _receive(self, generation: int, count: int) -> list[bytes]:
        """The outcomes of a batch sent to child `generation` (called in send order)."""
        with self._lock:
            if generation != self._generation:  # sent to a child that has since died
                return _lost(count)
            pipe = self._outcomes
        try:
            body = pipe.recv_bytes()
        except (EOFError, OSError):
            return self._restarted(generation, count)
        return wire.answers_of(body)  # one per command: the writer checks the count

    def retry_start(self) -> None:
        """Tries again to start a child after a restart failed (the health watcher calls it)."""
        with self._lock:  # not a generation read while a restart runs: that would replace its new child
            if self.down is None:
                return
            generation = self._generation
        self._restarted(generation, 0)

    def _restarted(self, generation: int, count: int) -> list[bytes]:
        """Replaces child `generation` unless that was done already; the batch is lost.
        The lock is never held while a pipe is read or written: a full pipe
        must not stop the other thread from draining the other one."""
        with self._lock:
            if generation == self._generation and not self._closed:
                self.starting = True  # writes wait from now: health says so
                try:
                    self._child.join(1.0)
                    if self._child.is_alive():
                        self._child.kill()
                        self._child.join()
                    # The old pipes are not closed here: the writer thread may be
                    # sending on the old commands pipe right now, and closing it
                    # under that send is a TypeError mid-write, or its fd number
                    # reused by the new child's pipe. Each closes when its last
                    # user lets go of it (Connection.__del__); a send to the dead
                    # child meanwhile is EPIPE, so that batch is lost as it should be.
                    self._generation += 1
                    if self._past_close_deadline():
                        raise _Closing()
                    self._start()
                except _Closing:  # not a failure: nothing is started once the server closes
                    return _lost(count, _CLOSING)
                except Exception as error:  # the next batch tries again; health says NOT_SERVING meanwhile
                    self.restart_failures += 1
                    self.down = str(error)
                    return _lost(count, f"the writer process could not be restarted ({error}); retry later")
                finally:
                    self.starting = False
                self.restarts += 1
                self.down = None
        return _lost(count)

    def begin_closing(self, grace_s: float | None = None) -> None:
        """The server is closing: a replacement child may still start for
        grace_s (default CLOSE_START_GRACE_S; the drain commits what is
        queued), then none is, and one being started is given up."""
        grace_s = CLOSE_START_GRACE_S if grace_s is None else grace_s
        self._no_start_after = min(self._no_start_after, time.monotonic() + grace_s)

    def close(self) -> None:
        """Stops the child after the batches it holds (called once the writer has stopped)."""
        self.begin_closing(0.0)
        with self._lock:  # waits for a restart in progress to give up; none starts after this
            self._closed = True
        try:
            self._commands.send_bytes(b"")  # stop
        except OSError:
            pass
        self._child.join(STOP_TIMEOUT_S)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()
        self._commands.close()
        self._outcomes.close()

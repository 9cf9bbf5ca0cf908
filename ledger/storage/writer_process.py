"""The writer's work in a process of its own (`medsettle serve
--writer-process`): the event loop writes each batch of write requests, as
the bytes gRPC received them, to a child process over a pipe, and reads the
answers' bytes from another (server/wire.py frames), so the parsing,
validation, split, rules, postings, SQLite writes and result messages run
under the child's GIL, not the one the gRPC event loop needs. No thread
of the gRPC process is on this path: the loop's reader callback resolves
the callers' futures itself.

Durability is the child's: it answers a batch only after its COMMIT
returned and, on SQLite, an fsync of the WAL begun after it
(ledger/storage/wal_sync.py). If the child dies mid-batch, the callers of every batch
sent to it and not answered are told to retry with the same msgid (each
batch may or may not have been committed; idempotency makes the retry
safe) and a new child is started on the same database, off the event loop
(a start takes about a second); writes wait meanwhile. Except after a
failed fsync of the WAL (the child exits with SYNC_FAILED_EXIT): the
ledger is fenced (ledger/storage/fence.py), no child is started on it
again, and every write is refused with STORAGE_UNAVAILABLE saying why."""

from __future__ import annotations

import asyncio
import math
import os
import select
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from medsettle.ledger.clock import Clock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.child_process import ChildProcesses
from medsettle.ledger.storage.fence import fence, fenced, marker_path, refusal, refuse_if_fenced, write_refusal
from medsettle.ledger.storage.phase_trace import PhaseTrace, tracer
from medsettle.ledger.storage.wal_sync import SYNC_FAILED_EXIT, AnswersAfterSync, WalFile, pipelined_wal, stop_fenced
from medsettle.ledger.storage.rerun_counts import RerunCounts, counted
from medsettle.ledger.storage.wal_figures import WalFigures, publish_checkpoints, writer_gone
from medsettle.ledger.storage.writer import PIPELINE_DEPTH
from medsettle.server import wire
from medsettle.server.logs import get_logger

if TYPE_CHECKING:
    from medsettle.ledger.storage.writer import GroupCommitWriter

START_TIMEOUT_S = 60.0
START_POLL_S = 0.1  # how often a start being waited for looks at the close deadline
# Once the server closes, a replacement child may still start for this long
# (a start takes about a second), so the drain commits what is queued; after
# it no child is started and one being started is given up.
CLOSE_START_GRACE_S = 10.0
STOP_TIMEOUT_S = 30.0
READ_BYTES = 1 << 20  # at most per read of the answers pipe
LOST = "the writer process stopped during this write; retry with the same msgid"
_CLOSING = "the server is closing; retry with the same msgid"
_READY = b"ready"
_STOP = b""  # the body of the frame that tells the child to stop
# From the child, an empty frame: the oldest batch not yet said so is
# committed, its answers follow after the WAL's fsync (ledger/storage/wal_sync.py).
SETTLED_FRAME = wire.frame(b"")
log = get_logger("medsettle.writer")


def _serve_batches(commands_in: Connection, answers_out: Connection, db_path: str, clock: Clock,
                   ecert_key: bytes | None, reruns: Connection, wal: Connection) -> None:
    """The child: opens the ledger, then answers batch after batch of write
    requests, in the order sent, until an empty frame says stop; after each,
    publishes its rerun counts (ledger/storage/rerun_counts.py, the memory
    whose descriptor `reruns` carries). Its SQLite WAL checkpointer publishes
    to the memory whose descriptor `wal` carries (ledger/storage/wal_figures.py)."""
    import signal

    # Ctrl-C reaches the whole process group: the parent drains, then stops the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.settlement.process import SettlementProcessor
    from medsettle.ledger.storage.backends import open_ledger
    from medsettle.server.collector import settle_collector
    from medsettle.server.writes import WriteRequests

    counts = RerunCounts(os.dup(reruns.fileno()))
    reruns.close()
    publish_checkpoints(db_path, WalFigures(os.dup(wal.fileno())))
    wal.close()
    store = open_ledger(db_path)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    run_body = counted(WriteRequests(processor, clock, ecert_key, store.rollback).run_body, processor, counts)
    read_fd, write_fd = commands_in.fileno(), answers_out.fileno()
    frames = wire.FrameReader()
    trace = tracer("writer", ("read", "started", "commit_start", "committed", "written", "bytes_in"))
    if trace is not None:
        run_body = _traced_run(run_body, store, trace)
    answers = _AnswersOut(write_fd, pipelined_wal(store))
    settle_collector()  # server/collector.py: no full collection walks the ledger's caches and the reference data
    try:
        answers.write(wire.frame(_READY))
        for bodies in read_bodies(read_fd, frames):
            if trace is not None:
                trace.marks[0] = trace.clock()
            for body in bodies:
                if body == _STOP:
                    return
                answers.batch(wire.frame(run_body(body)))
                if trace is not None:
                    trace.add(trace.marks[0], *trace.marks.pop(1), trace.clock(), len(body))
    except BrokenPipeError:  # the parent is gone
        pass
    finally:
        answers.close()  # every batch's answers written (after its sync) before the ledger closes
        if trace is not None:
            times = os.times()  # CPU: this thread, all threads, all in user space, all in the kernel
            trace.add(-1.0, time.thread_time(), time.process_time(), times.user, times.system, 0)
        store.close()


def read_bodies(read_fd: int, frames: wire.FrameReader) -> Iterator[list[bytes]]:
    """The frame bodies each read of the commands pipe completes, until its
    end. Every read lands in one buffer: os.read(fd, READ_BYTES) allocates
    READ_BYTES at each read, from glibc's heap once its mmap threshold has
    risen (freeing any larger block raises it), and the batch's allocations
    kept between two reads left that heap ever more fragmented (its free
    bytes grew by about 1 MiB per 9,000 settlements under unary load)."""
    received = bytearray(READ_BYTES)
    view = memoryview(received)
    while count := os.readv(read_fd, (received,)):
        yield frames.feed(view[:count])


class _AnswersOut:
    """The child's end of the answers pipe. Without a WAL to sync (PostgreSQL),
    each batch's answers go out once it ran (its commit is durable). With one
    (SQLite, ledger/storage/wal_sync.py), an empty frame says at once that
    the batch is settled, so the gRPC process sends the next one, and its
    answers follow once the WAL's fsync covers its commit."""

    def __init__(self, fd: int, wal: WalFile | None) -> None:
        self._fd = fd
        self._lock = threading.Lock()  # whole frames: the syncer's thread writes too
        self._wal = wal
        self._after_sync = (AnswersAfterSync(wal.sync, self.write, stop_fenced(wal.db_path))
                            if wal is not None else None)

    def write(self, data: bytes) -> None:
        with self._lock:
            _write_all(self._fd, data)

    def batch(self, answers: bytes) -> None:
        """A batch's answers frame, after its commit returned."""
        if self._after_sync is None:
            self.write(answers)
            return
        self.write(SETTLED_FRAME)  # before the answers are handed over: the parent sees it first
        self._after_sync.settled(answers)

    def close(self) -> None:
        if self._after_sync is not None:
            self._after_sync.close()
        if self._wal is not None:
            self._wal.close()


def _traced_run(run_body: Any, store: Any, trace: PhaseTrace) -> Any:
    """run_body and the store's commit with their times kept in trace.marks[1]
    (ledger/storage/phase_trace.py): started, commit begun, committed."""
    commit = store.commit
    times: list[float] = []

    def timed_commit() -> None:
        times.append(trace.clock())
        commit()
        times.append(trace.clock())

    def timed_run(body: bytes) -> bytes:
        times.clear()
        started = trace.clock()
        answers = run_body(body)
        trace.marks[1] = (started, *(times[-2:] if len(times) >= 2 else (0.0, 0.0)))  # type: ignore[assignment]
        return answers

    store.commit = timed_commit
    return timed_run


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Closing(Exception):
    """A child is not started, or one being started is given up: the server closes."""


def _storage_unavailable(why: str) -> bytes:
    return wire.refused(Refused(Reason.STORAGE_UNAVAILABLE, why))


class WriterProcess:
    """The writer child's life: start, restart after a death, close. Starts
    block (about a second; up to START_TIMEOUT_S): call them off the event
    loop. `generation` counts children; the pipes of the current one are
    `commands` (the parent writes) and `answers` (the parent reads)."""

    def __init__(self, db_path: str | Path, clock: Clock, ecert_key: bytes | None = None) -> None:
        # A fresh interpreter, not fork: the parent runs gRPC threads, which
        # must not be forked; and not multiprocessing's spawn, whose resource
        # tracker (a second child) would serve nothing here.
        self._context = ChildProcesses()
        self._db_path = str(db_path)
        self._clock = clock  # the child gets a copy: a clock moved later in the parent is not seen
        self._ecert_key = ecert_key
        self._lock = threading.Lock()  # one start at a time (a death's restart, the health watcher's retry)
        self.generation = 0
        self.restarts = 0  # children started to replace a dead one
        self.restart_failures = 0  # tries to replace one that failed (down says why)
        self.down: str | None = None  # why the last restart failed, until one succeeds; or why the ledger is fenced
        self.fenced: str | None = None  # why the ledger is fenced (a failed WAL fsync): no child is started again
        self.starting = False  # a child is being started to replace a dead one: writes wait meanwhile
        self._closed = False  # set by close(): no child is started after it
        self._no_start_after = math.inf  # monotonic time from which no child is started (the server closes)
        self.reruns = RerunCounts()  # every child's batch reruns, for /metrics
        self.wal_figures = WalFigures()  # every child's WAL checkpointer, for /metrics and health
        refuse_if_fenced(self._db_path)
        self._start()

    def _start(self) -> None:
        commands_in, commands = self._context.Pipe(duplex=False)
        answers, answers_out = self._context.Pipe(duplex=False)
        reruns = Connection(os.dup(self.reruns.fd))  # passed on as a descriptor, as the pipes are
        wal = Connection(os.dup(self.wal_figures.fd))
        child = self._context.Process(
            target=_serve_batches,
            args=(commands_in, answers_out, self._db_path, self._clock, self._ecert_key, reruns, wal),
            name="medsettle: writer", daemon=True,
        )
        try:
            child.start()
        except BaseException:
            commands.close()
            answers.close()
            raise
        finally:  # the parent keeps only its own ends: a dead child is then EOF/EPIPE, never a hang
            commands_in.close()
            answers_out.close()
            reruns.close()
            wal.close()
        # Only a started child replaces the last one: a start that raised (no
        # fork: EAGAIN, EMFILE) leaves one that the next restart can join.
        self._child, self.commands, self.answers = child, commands, answers
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
        frames = wire.FrameReader()
        fd = self.answers.fileno()
        try:
            while not self._past_close_deadline():
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    return False
                readable, _, _ = select.select([fd], [], [], min(remaining_s, START_POLL_S))
                if readable:
                    data = os.read(fd, len(wire.frame(_READY)))
                    if not data:  # the child died while starting
                        return False
                    bodies = frames.feed(data)
                    if bodies:
                        return bodies == [_READY]
        except OSError:
            pass
        return False

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def kill(self) -> None:
        """Kills the child (it broke the protocol); the channel sees its death."""
        self._child.kill()

    def restart(self, generation: int) -> None:
        """Replaces child `generation` (it died) unless that was done already.
        Blocks while the new child starts; down says why if it could not."""
        with self._lock:
            try:
                if generation != self.generation or self._closed:
                    return
                self.starting = True  # writes wait meanwhile: health says so
                self._replace()
            finally:
                self.starting = False

    def _replace(self) -> None:
        self._child.join(1.0)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()
        self.commands.close()
        self.answers.close()
        self.generation += 1
        writer_gone(self.wal_figures)  # the child is dead: no writer publishes there until the next starts
        if self._child.exitcode == SYNC_FAILED_EXIT or fenced(self._db_path) is not None:
            self._fence()
            return
        try:
            if self._past_close_deadline():
                raise _Closing()
            self._start()
        except _Closing:  # not a failure: nothing is started once the server closes
            self.down = _CLOSING
            return
        except Exception as error:  # health says NOT_SERVING; its watcher tries again
            self.restart_failures += 1
            self.down = f"the writer process could not be restarted ({error}); retry later"
            return
        self.restarts += 1
        self.down = None

    def _fence(self) -> None:
        """The child stopped after a failed fsync of the WAL: its replacement
        would read the commits that sync lost from the page cache as stored
        (ledger/storage/fence.py). No child is started again; writes are refused."""
        why = "the fsync of its WAL failed"
        record = fenced(self._db_path)
        marker_note = str(marker_path(self._db_path))
        if record is not None:
            why = str(record.get("why", why))
        else:  # the child could not write the marker (or died before): the gRPC process tries
            try:
                fence(self._db_path, f"{why} (the writer process exited with status {self._child.exitcode})")
            except OSError as error:
                marker_note = (f"{marker_note}: not written whole or not durably ({error}); "
                               "do not start a server on this file before the runbook")
        self.fenced = self.down = write_refusal(why)
        log.critical("ledger fenced: the WAL's fsync failed; writes refused, no writer restarted",
                     detail=refusal(self._db_path, why), marker=marker_note)

    def retry_start(self) -> None:
        """Tries again to start a child after a restart failed (the health watcher calls it)."""
        with self._lock:
            if self.down is None or self.fenced is not None or self._closed or self._past_close_deadline():
                return
            generation = self.generation
        self.restart(generation)

    def begin_closing(self, grace_s: float | None = None) -> None:
        """The server is closing: a replacement child may still start for
        grace_s (default CLOSE_START_GRACE_S; the drain commits what is
        queued), then none is, and one being started is given up."""
        grace_s = CLOSE_START_GRACE_S if grace_s is None else grace_s
        self._no_start_after = min(self._no_start_after, time.monotonic() + grace_s)

    def close(self) -> None:
        """Stops the child after the batches it holds (called off the loop, after the drain)."""
        self.begin_closing(0.0)
        with self._lock:  # waits for a restart in progress to give up; none starts after this
            self._closed = True
        try:
            os.set_blocking(self.commands.fileno(), True)
            _write_all(self.commands.fileno(), wire.frame(_STOP))
        except OSError:
            pass
        self._child.join(STOP_TIMEOUT_S)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()
        self.commands.close()
        self.answers.close()


class ProcessChannel:
    """The writer's channel (ledger/storage/writer.py) to a WriterProcess,
    driven by the event loop: batches are written to the commands pipe
    (non-blocking; what does not fit waits for the pipe to drain), answers
    read from the answers pipe by a reader callback, whatever the reads'
    boundaries. A dead child (EOF, EPIPE, a broken frame) loses the batches
    in flight; its replacement starts on an executor thread."""

    depth = PIPELINE_DEPTH

    def __init__(self, process: WriterProcess) -> None:
        self.process = process
        self._writer: GroupCommitWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached: int | None = None  # the generation whose pipes the loop watches
        self._frames = wire.FrameReader()
        self._unsent = bytearray()  # frames the commands pipe did not take yet
        # The commands pipe broke (EPIPE): nothing more is sent, and the child
        # is taken for dead once the answers already read are delivered.
        self._broken = False
        self._closed = False

    def open(self, writer: GroupCommitWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._attach()

    def up(self) -> bool:
        return self._attached is not None and not self._broken

    def down(self) -> str | None:
        process = self.process
        return process.down if process.down is not None and not process.starting else None

    def _attach(self) -> None:
        assert self._loop is not None
        process = self.process
        if self._closed or process.down is not None or process.starting or self._attached == process.generation:
            return
        self._attached = process.generation
        self._broken = False
        self._frames = wire.FrameReader()
        self._unsent.clear()
        self._commands_fd, self._answers_fd = process.commands.fileno(), process.answers.fileno()
        os.set_blocking(self._commands_fd, False)
        os.set_blocking(self._answers_fd, False)
        self._loop.add_reader(self._answers_fd, self._readable)

    def _detach(self) -> None:
        assert self._loop is not None
        if self._attached is None:
            return
        self._loop.remove_reader(self._answers_fd)
        self._loop.remove_writer(self._commands_fd)
        self._attached = None
        self._unsent.clear()

    def send(self, body: bytes) -> None:
        data = wire.frame(body)
        if self._unsent:  # frames go out in order: behind those waiting
            self._unsent += data
            return
        try:
            written = os.write(self._commands_fd, data)
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the child is gone; nothing of this batch reached it
            self._broke()
            return
        if written < len(data):
            self._unsent += data[written:]
            assert self._loop is not None
            self._loop.add_writer(self._commands_fd, self._writable)

    def _writable(self) -> None:
        try:
            written = os.write(self._commands_fd, self._unsent)
        except BlockingIOError:
            return
        except OSError:
            self._broke()
            return
        del self._unsent[:written]
        if not self._unsent:
            assert self._loop is not None
            self._loop.remove_writer(self._commands_fd)

    def _readable(self) -> None:
        assert self._writer is not None
        try:
            data = os.read(self._answers_fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF: the child is gone
            self._died()
            return
        generation = self._attached
        try:
            for body in self._frames.feed(data):
                if self._attached != generation:  # lost with its child while this read was answered
                    return
                if not body:
                    if not self._writer.settled():
                        raise wire.FrameError("a batch settled that was not sent")
                    continue
                if not self._writer.in_flight():
                    raise wire.FrameError("answers for no batch in flight")
                self._writer.answered(wire.answers_of(body))
        except wire.FrameError:  # the child broke the protocol: it is replaced like a dead one
            self.process.kill()
            self._died()

    def _broke(self) -> None:
        """A send found the commands pipe broken. The answers of this read
        (an answer's flush may be what sent) are delivered first; then the
        batches still in flight are lost and the child replaced."""
        if self._attached is None or self._broken:
            return
        self._broken = True
        assert self._loop is not None
        generation = self._attached
        self._loop.call_soon(lambda: self._died() if self._attached == generation else None)

    def _died(self) -> None:
        """Loses the batches in flight and starts a replacement off the loop."""
        assert self._loop is not None and self._writer is not None
        generation = self._attached
        self._detach()
        self._writer.lost(_storage_unavailable(LOST))
        if generation is None or self._closed:
            return
        self.process.starting = True  # writes wait from now (the executor may start the restart later)
        restart = self._loop.run_in_executor(None, self.process.restart, generation)
        restart.add_done_callback(lambda _: self.resume())

    def resume(self) -> None:
        """On the loop, after a start: watches the new child's pipes and sends
        what waits; if none could be started, refuses what waits."""
        assert self._writer is not None
        self._attach()
        if self.up():
            self._writer.resume()
        elif self.process.down is not None:
            self._writer.refuse_waiting(_storage_unavailable(self.process.down))

    def close(self) -> None:
        """After the drain: the loop lets go of the pipes (WriterProcess.close stops the child)."""
        self._closed = True
        self._detach()

"""The single writer, driven by the event loop: write requests (server/wire.py)
wait in a bounded queue; once per loop iteration every one waiting (up to
max_batch) goes to the writer as one batch, committed in one transaction
(group commit). A caller is answered only after the commit that holds its
write has returned.

No thread of the gRPC process touches a write: the loop queues, sends and
answers. Where the batch runs is the channel's business: a writer child
process over two pipes the loop reads and writes (ledger/storage/
writer_process.py), or the writer thread (ThreadChannel, `--writer-thread`).

Batches to a writer process are pipelined: while batch N runs, batch N+1
may be sent, at most PIPELINE_DEPTH at once; they complete in the order sent, so N+1 sees N's
commit (idempotency, accumulators, the hash chain) as if it ran after it.
With no batch being settled in the writer, what waits goes at once; with
one there, the next is sent only once WriterLimits.overlap_min writes
wait, else they wait until it is settled and go as one larger batch (each
batch pays the writer's fixed cost: commit, fsync, the pipe round trip).
A writer process on SQLite says when a batch is settled (committed) and
answers it after the WAL's fsync (ledger/storage/wal_sync.py), so the next
batch runs during that fsync; a channel that does not say so has its
batches settled when answered.
A caller that gave up (deadline, cancel) before its batch was sent is not
settled."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.phase_trace import tracer
from medsettle.ledger.stats import FixedHistogram
from medsettle.server import wire

PIPELINE_DEPTH = 4  # batches sent and not yet answered: one being settled, the rest awaiting their fsync
UNSETTLED_DEPTH = 2  # of those, sent and not yet settled (one running, one queued behind it)
# While every batch sent awaits only its fsync, the next is sent once this
# many writes wait (or once one is answered): a batch's fixed cost is about
# as much CPU as four settlements'. Under unary load at 64 in flight, 4 made
# batches of 5-6 and cost 0.54-0.57 ms of server CPU per settlement against
# 0.48-0.51 without the pipelined sync; 16 made batches of 7-10 at 0.50-0.52,
# as many settled a second.
SYNCING_MIN = 16
OVERLAP_MIN = 32  # WriterLimits.overlap_min's default (docs/operations.md: the writer)
# Buckets of the writer's metrics: commands per batch, and seconds from
# sending a batch to having its answers (its commit and fsync included).
BATCH_COMMANDS_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
BATCH_SECONDS_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class BatchProcessor(Protocol):
    def run_batch(self, commands: Any) -> list[Any]:
        """One outcome per command: a value, or an exception to raise to its caller."""


class Channel(Protocol):
    """Where the writer's batches run. Answers come back, in the order the
    batches were sent, through the writer's answered(); a channel that lost
    its batches (a dead child) calls lost(), and resume() once it is up again."""

    depth: int  # batches it takes at once (sent and not answered)

    def open(self, writer: GroupCommitWriter) -> None:
        """Starts serving the writer (on its event loop)."""

    def up(self) -> bool:
        """Whether a batch can be sent now (not while a child is being replaced)."""

    def down(self) -> str | None:
        """Why writes cannot be taken at all now (they are refused), or None."""

    def send(self, body: bytes) -> None:
        """Sends a batch body (server/wire.py); never blocks."""

    def close(self) -> None:
        """Stops serving (on the loop, after the drain)."""


@dataclass(frozen=True, slots=True)
class WriterLimits:
    max_batch: int = 512  # commands per transaction
    max_queue: int = 8_192  # commands waiting; beyond this callers get OVERLOADED
    # Request bytes, since a request may be up to --max-message-bytes: a batch
    # stops growing at max_batch_bytes (it always holds one write), and beyond
    # max_queue_bytes waiting callers get OVERLOADED.
    max_batch_bytes: int = 64 << 20
    max_queue_bytes: int = 256 << 20
    # While a batch is in the writer, the next one is sent only once this
    # many writes wait (capped at max_batch); 1 sends it at once.
    overlap_min: int = OVERLAP_MIN


def batch_failure(error: BaseException) -> Refused:
    """What each caller of a batch that raised is told (the writer lives on)."""
    return Refused(Reason.INTERNAL, f"internal error: {type(error).__name__}")


_Waiting = tuple[wire.Write, "asyncio.Future[bytes]"]


class GroupCommitWriter:
    def __init__(self, channel: Channel, limits: WriterLimits = WriterLimits()) -> None:
        assert 1 <= limits.max_batch <= limits.max_queue and channel.depth >= 1 and limits.overlap_min >= 1
        assert 1 <= limits.max_batch_bytes <= wire.MAX_FRAME_BYTES // 2 and limits.max_queue_bytes >= 1
        self._channel = channel
        self._limits = limits
        self._depth = channel.depth
        self._overlap_min = min(limits.overlap_min, limits.max_batch)
        self._syncing_min = min(SYNCING_MIN, limits.max_batch)
        self._waiting: deque[_Waiting] = deque()
        self._waiting_bytes = 0  # request bytes of the writes waiting
        self._sent: deque[tuple[list[asyncio.Future[bytes]], float]] = deque()  # in the order sent
        # How many of the oldest batches sent the channel said are settled,
        # their answers awaiting only the WAL's fsync (writer_process.py): the
        # writer then takes the next batch. A channel that never says so
        # (the writer thread, PostgreSQL) leaves it 0.
        self._settled = 0
        self._flush_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None  # set while nothing waits or is sent (the drain waits for it)
        self.batches_committed = 0
        self.commands_done = 0
        self.batch_commands = FixedHistogram(BATCH_COMMANDS_BOUNDS)
        self.batch_seconds = FixedHistogram(BATCH_SECONDS_BOUNDS)
        # Off by default (ledger/storage/phase_trace.py): per batch, when its
        # writes were queued, when it was sent (with how many batches then in
        # the writer) and answered.
        self._trace = tracer("batches", ("n", "in_flight", "first_submit", "last_submit", "mean_submit",
                                         "sent", "answered"))
        self._traced_sends: deque[tuple[Any, ...]] = deque()

    def start(self) -> None:
        """Starts on the running event loop; every later call is made on it."""
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._channel.open(self)

    def queue_length(self) -> int:
        return len(self._waiting)

    def submit(self, write: wire.Write) -> asyncio.Future[bytes]:
        """Queues a write; the future resolves to its answer after its batch's commit."""
        assert self._loop is not None and self._idle is not None, "the writer is not started"
        down = self._channel.down()
        if down is not None:
            raise Refused(Reason.STORAGE_UNAVAILABLE, down)
        if len(self._waiting) >= self._limits.max_queue:
            raise Refused(Reason.OVERLOADED, f"writer queue full ({self._limits.max_queue}); retry with the same msgid")
        if self._waiting and self._waiting_bytes + len(write[1]) > self._limits.max_queue_bytes:
            raise Refused(Reason.OVERLOADED, f"writer queue full ({self._limits.max_queue_bytes} request bytes); "
                          "retry with the same msgid")
        future = self._loop.create_future()
        self._waiting.append((write, future))
        self._waiting_bytes += len(write[1])
        self._idle.clear()
        if self._trace is not None:
            self._trace.marks[id(future)] = self._trace.clock()
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Sends what waits, as batches, while the pipeline and the channel take them."""
        self._flush_due = False
        limit = self._limits.max_batch
        while self._waiting and len(self._sent) < self._depth and self._channel.up():
            unsettled = len(self._sent) - self._settled
            if unsettled >= UNSETTLED_DEPTH or (unsettled and len(self._waiting) < self._overlap_min):
                break  # they go with the writes still to come, once the batch in the writer is settled
            if self._sent and not unsettled and len(self._waiting) < self._syncing_min:
                break  # every batch sent awaits only its fsync: a few more writes make the next one cheaper
            writes, futures = [], []
            room_bytes = self._limits.max_batch_bytes
            while self._waiting and len(writes) < limit and (not writes or len(self._waiting[0][0][1]) <= room_bytes):
                write, future = self._waiting.popleft()
                self._waiting_bytes -= len(write[1])
                if not future.done():  # a caller that gave up before its turn is not settled
                    writes.append(write)
                    futures.append(future)
                    room_bytes -= len(write[1])
                elif self._trace is not None:
                    self._trace.marks.pop(id(future), None)
            if writes:
                self._send(writes, futures)
            else:  # every caller of this batch had given up: it is taken, and empty (medsettle_writer_batches)
                self.batches_committed += 1
        self._check_idle()

    def _send(self, writes: list[wire.Write], futures: list[asyncio.Future[bytes]]) -> None:
        """Sends one batch. It joins the batches awaiting answers before the
        send, so a send that finds the child dead loses it with the others;
        a send that raises fails it alone, or the next batch's answers would
        go to its callers."""
        entry = (futures, time.perf_counter())
        if self._trace is not None:
            self._trace_send(futures, entry[1])
        self._sent.append(entry)
        try:
            self._channel.send(wire.batch_body(writes))
        except Exception as error:
            if self._sent and self._sent[-1] is entry:
                self._sent.pop()
                if self._trace is not None and self._traced_sends:  # its row would go to the next batch answered
                    self._traced_sends.pop()
            self.batches_committed += 1
            self.commands_done += len(futures)
            _resolve(futures, [wire.refused(batch_failure(error))] * len(futures))

    def _trace_send(self, futures: list[asyncio.Future[bytes]], sent_at: float) -> None:
        assert self._trace is not None
        marks = self._trace.marks
        submits = [marks.pop(id(f), sent_at) for f in futures]
        self._traced_sends.append((len(futures), len(self._sent), min(submits), max(submits),
                                   sum(submits) / len(submits), sent_at))

    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._sent)

    def settled(self) -> bool:
        """The channel: the oldest batch sent and not yet settled is committed,
        its answers follow after a sync; False if no batch is being settled."""
        if self._settled >= len(self._sent):
            return False
        self._settled += 1
        self._flush()
        return True

    def answered(self, answers: list[bytes] | BaseException) -> None:
        """The channel: the oldest batch sent has these answers (or failed whole with this error)."""
        futures, sent_at = self._sent.popleft()
        if self._settled:
            self._settled -= 1
        if self._trace is not None and self._traced_sends:
            self._trace.add(*self._traced_sends.popleft(), self._trace.clock())
        if not isinstance(answers, BaseException) and len(answers) != len(futures):
            answers = RuntimeError(f"{len(answers)} answers for {len(futures)} writes")
        if isinstance(answers, BaseException):
            answers = [wire.refused(batch_failure(answers))] * len(futures)
        self.batches_committed += 1
        self.commands_done += len(futures)
        self.batch_commands.observe(len(futures))
        self.batch_seconds.observe(time.perf_counter() - sent_at)
        _resolve(futures, answers)
        self._flush()

    def lost(self, answer: bytes) -> None:
        """The channel: every batch sent and not answered is lost; each of its callers gets `answer`."""
        self._traced_sends.clear()
        self._settled = 0
        while self._sent:
            futures, _ = self._sent.popleft()
            self.batches_committed += 1
            self.commands_done += len(futures)
            _resolve(futures, [answer] * len(futures))
        self._check_idle()

    def refuse_waiting(self, answer: bytes) -> None:
        """The channel cannot take batches (its child could not be restarted): every waiting caller gets `answer`."""
        while self._waiting:
            (_, data), future = self._waiting.popleft()
            self._waiting_bytes -= len(data)
            if self._trace is not None:
                self._trace.marks.pop(id(future), None)
            if not future.done():
                future.set_result(answer)
        self._check_idle()

    def resume(self) -> None:
        """The channel is up again: what waits is sent."""
        self._flush()

    async def drain(self) -> None:
        """Returns once every queued write is answered (the channel decides how, if it is down)."""
        if self._idle is not None:
            await self._idle.wait()

    def close(self) -> None:
        """After the drain: the channel stops."""
        if self._loop is not None:
            self._channel.close()

    def _check_idle(self) -> None:
        if not self._waiting and not self._sent and self._idle is not None:
            self._idle.set()


def _resolve(futures: list[asyncio.Future[bytes]], answers: list[bytes]) -> None:
    for future, answer in zip(futures, answers):
        if not future.done():
            future.set_result(answer)


class ThreadChannel:
    """`--writer-thread`: each batch runs on one thread of this process,
    through the same bytes interface as the writer process."""

    depth = 1  # one thread: a second batch sent would only wait, outside the bounded queue

    def __init__(self, run_body: Callable[[bytes], bytes]) -> None:
        self._run_body = run_body  # WriteRequests.run_body (server/writes.py)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self._writer: GroupCommitWriter | None = None

    def open(self, writer: GroupCommitWriter) -> None:
        self._writer = writer

    def up(self) -> bool:
        return True

    def down(self) -> str | None:
        return None

    def send(self, body: bytes) -> None:
        # One thread: batches run, and their answers come back, in the order sent.
        future = asyncio.get_running_loop().run_in_executor(self._thread, self._run_body, body)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[bytes]) -> None:
        assert self._writer is not None
        error = future.exception()
        self._writer.answered(error if error is not None else wire.answers_of(future.result()))

    def close(self) -> None:
        pass

    def stop(self) -> None:
        """Waits for the batch running, if any (called off the loop, when the service closes)."""
        self._thread.shutdown(wait=True)

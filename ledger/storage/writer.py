"""The single writer: one thread takes commands from a bounded queue, runs as
many as are waiting (up to max_batch) against the ledger and commits them in
one transaction (group commit); a second thread answers each caller. A caller
is answered only after the commit that holds its settlement has returned.

Batches are pipelined: while the answer thread waits for batch N's outcomes
(from a writer process, ledger/storage/writer_process.py), batch N+1 is
already sent, so the process that commits never waits for the one that
serves gRPC. At most PIPELINE_DEPTH batches are outstanding; they complete
in the order they were sent, so batch N+1 sees N's commit (idempotency, the
person's accumulators, the hash chain) exactly as if it ran after it."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.stats import FixedHistogram

_STOP = object()
PIPELINE_DEPTH = 2  # batches sent and not yet answered
# Buckets of the writer's metrics: commands per batch, and seconds from
# sending a batch to having its outcomes (its commit and fsync included).
BATCH_COMMANDS_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
BATCH_SECONDS_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

Outcomes = Callable[[], list[Any]]  # waits for a sent batch's outcomes, one per command


class BatchProcessor(Protocol):
    def run_batch(self, commands: Sequence[Any]) -> list[Any]:
        """One outcome per command: a value, or an exception to raise to its caller."""


class PipelinedProcessor(Protocol):
    def send_batch(self, commands: Sequence[Any]) -> Outcomes:
        """Starts a batch; the call returned waits for its outcomes. Batches
        complete in the order they were sent."""


@dataclass(frozen=True, slots=True)
class WriterLimits:
    max_batch: int = 512  # commands per transaction
    max_queue: int = 8_192  # commands waiting; beyond this callers get OVERLOADED


def batch_failure(error: Exception) -> Refused:
    """What each caller of a batch that raised is told (the writer lives on)."""
    return Refused(Reason.INTERNAL, f"internal error: {type(error).__name__}")


class InlineBatches:
    """A BatchProcessor run on the writer thread itself: the batch is done when sent."""

    def __init__(self, processor: BatchProcessor) -> None:
        self._processor = processor

    def send_batch(self, commands: Sequence[Any]) -> Outcomes:
        outcomes = self._processor.run_batch(commands)
        return lambda: outcomes


class GroupCommitWriter:
    def __init__(self, processor: PipelinedProcessor, limits: WriterLimits = WriterLimits()) -> None:
        assert 1 <= limits.max_batch <= limits.max_queue
        self._processor = processor
        self._limits = limits
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=limits.max_queue)
        # Sent batches, in order, for the answer thread; the semaphore bounds them.
        self._sent: queue.Queue[Any] = queue.Queue()
        self._outstanding = threading.BoundedSemaphore(PIPELINE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._answerer = threading.Thread(target=self._answer, name="ledger-answers", daemon=True)
        self.batches_committed = 0
        self.commands_done = 0
        # Kept by the answer thread, read by the metrics scrape (ledger/stats.py).
        self.batch_commands = FixedHistogram(BATCH_COMMANDS_BOUNDS)
        self.batch_seconds = FixedHistogram(BATCH_SECONDS_BOUNDS)

    def start(self) -> None:
        self._thread.start()
        self._answerer.start()

    def queue_length(self) -> int:
        return self._queue.qsize()

    def submit(self, command: Any) -> asyncio.Future[Any]:
        """Queues a command; the future resolves after its batch is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        try:
            self._queue.put_nowait((command, future, loop))
        except queue.Full:
            raise Refused(Reason.OVERLOADED, f"writer queue full ({self._limits.max_queue}); retry with the same msgid") from None
        return future

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finishes every queued command, then stops both threads."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
        if self._answerer.is_alive():
            self._answerer.join(timeout_s)

    def _take_batch(self) -> tuple[list[Any], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        items = [first]
        while len(items) < self._limits.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items, stopping = self._take_batch()
            if not items:
                continue
            # A caller that gave up (deadline, cancel) before its turn is not settled.
            live = [item for item in items if not item[1].done()]
            self._outstanding.acquire()
            sent_at = time.perf_counter()
            try:
                outcomes = self._processor.send_batch([command for command, _, _ in live]) if live else list
            except Exception as error:  # the writer thread must outlive any one batch
                failure = batch_failure(error)
                outcomes = lambda: [failure] * len(live)  # noqa: E731
            self._sent.put((live, outcomes, sent_at))
        self._sent.put(_STOP)

    def _answer(self) -> None:
        while (sent := self._sent.get()) is not _STOP:
            live, outcomes_of, sent_at = sent
            try:
                outcomes = outcomes_of()
                if len(outcomes) != len(live):  # not an assert: under -O a caller would never be answered
                    raise RuntimeError(f"{len(outcomes)} outcomes for {len(live)} commands")
            except Exception as error:  # as above: one batch fails, the writer lives
                outcomes = [batch_failure(error)] * len(live)
            self._outstanding.release()
            self.batches_committed += 1
            self.commands_done += len(live)
            if live:
                self.batch_commands.observe(len(live))
                self.batch_seconds.observe(time.perf_counter() - sent_at)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for (_, future, loop), outcome in zip(live, outcomes):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, answers in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_answer_all, answers)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass


def _answer_all(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, outcome in answers:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

"""The single writer: one thread takes commands from a bounded queue, runs as
many as are waiting (up to max_batch) against the ledger and commits them in
one transaction (group commit), then answers each caller. A caller is answered
only after the commit that holds its settlement has returned."""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from medsettle.ledger.errors import Reason, Refused

_STOP = object()

class BatchProcessor(Protocol):
    def run_batch(self, commands: Sequence[Any]) -> list[Any]:
        """One outcome per command: a value, or an exception to raise to its caller."""

@dataclass(frozen=True, slots=True)
class WriterLimits:
    max_batch: int = 512  # commands per transaction
    max_queue: int = 8_192  # commands waiting; beyond this callers get OVERLOADED

def batch_failure(error: Exception) -> Refused:
    """What each caller of a batch that raised is told (the writer lives on)."""
    return Refused(Reason.INTERNAL, f"internal error: {type(error).__name__}")


class GroupCommitWriter:
    def __init__(self, processor: BatchProcessor, limits: WriterLimits = WriterLimits()) -> None:
        assert 1 <= limits.max_batch <= limits.max_queue
        self._processor = processor
        self._limits = limits
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=limits.max_queue)
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.batches_committed = 0
        self.commands_done = 0

    def start(self) -> None:
        self._thread.start()

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
        """Finishes every queued command, then stops the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

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
            try:
                outcomes = self._processor.run_batch([command for command, _, _ in live]) if live else []
            except Exception as error:  # the writer thread must outlive any one batch
                failure = batch_failure(error)
                outcomes = [failure] * len(live)
            self.batches_committed += 1
            self.commands_done += len(live)
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

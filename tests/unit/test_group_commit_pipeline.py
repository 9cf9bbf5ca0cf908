"""The group-commit writer pipelines batches: batch N+1 is sent while batch
N's outcomes are awaited, never more than PIPELINE_DEPTH at once, and every
caller gets its own outcome, in order. A fake processor stands for the writer
process so the test decides when each batch completes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Sequence

import pytest

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.writer import PIPELINE_DEPTH, GroupCommitWriter, WriterLimits

WAIT_S = 10.0


class HeldBatches:
    """Records each batch sent; its outcomes come when the test releases it."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []
        self.releases: list[threading.Event] = []
        self.changed = threading.Condition()

    def send_batch(self, commands: Sequence[Any]) -> Any:
        release = threading.Event()
        with self.changed:
            self.sent.append(list(commands))
            self.releases.append(release)
            self.changed.notify_all()

        def outcomes() -> list[Any]:
            assert release.wait(WAIT_S), "the test never released this batch"
            if commands[0] == "broken":
                raise RuntimeError("the batch failed")
            if commands[0] == "short":
                return []
            return [f"done {command}" for command in commands]

        return outcomes

    def wait_sent(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.sent) >= count, WAIT_S), self.sent


def release_each_as_sent(processor: HeldBatches, batches: int) -> None:
    """Lets each batch complete once it is sent (the depth holds back the rest)."""
    for count in range(1, batches + 1):
        processor.wait_sent(count)
        processor.releases[count - 1].set()


@pytest.fixture
def started():  # type: ignore[no-untyped-def]
    """start(max_batch) -> (processor, running writer); every batch released and the writer stopped after."""
    made: list[tuple[HeldBatches, GroupCommitWriter]] = []

    def start(max_batch: int) -> tuple[HeldBatches, GroupCommitWriter]:
        processor = HeldBatches()
        writer = GroupCommitWriter(processor, WriterLimits(max_batch=max_batch, max_queue=8))
        writer.start()
        made.append((processor, writer))
        return processor, writer

    yield start
    for processor, writer in made:
        for release in processor.releases:
            release.set()
        writer.stop()


async def _submit_one_at_a_time(writer: GroupCommitWriter, commands: list[str]) -> list[asyncio.Future[Any]]:
    return [writer.submit(command) for command in commands]


def test_the_next_batch_is_sent_before_the_first_is_answered_and_depth_is_bounded(started) -> None:  # type: ignore[no-untyped-def]
    processor, writer = started(1)

    async def scenario() -> list[Any]:
        futures = await _submit_one_at_a_time(writer, ["a", "b", "c"])
        await asyncio.to_thread(processor.wait_sent, PIPELINE_DEPTH)
        await asyncio.sleep(0.2)  # time enough for a third send, were the depth not bounded
        assert [batch for batch in processor.sent] == [["a"], ["b"]]
        assert not any(f.done() for f in futures)
        processor.releases[0].set()
        assert await futures[0] == "done a"
        await asyncio.to_thread(processor.wait_sent, 3)  # the answered batch made room for "c"
        assert not futures[1].done()
        processor.releases[2].set()  # "c" completes first in the fake; its answer still waits for "b"
        await asyncio.sleep(0.2)
        assert not futures[2].done()
        processor.releases[1].set()
        return [await f for f in futures]

    assert asyncio.run(scenario()) == ["done a", "done b", "done c"]
    assert writer.batches_committed == 3 and writer.commands_done == 3


def test_a_batch_whose_outcomes_raise_or_are_missing_fails_alone(started) -> None:  # type: ignore[no-untyped-def]
    processor, writer = started(1)

    async def scenario() -> list[Any]:
        futures = await _submit_one_at_a_time(writer, ["broken", "short", "fine"])
        await asyncio.to_thread(release_each_as_sent, processor, 3)
        return await asyncio.gather(*futures, return_exceptions=True)

    failed, unanswered, fine = asyncio.run(scenario())
    assert isinstance(failed, Refused) and failed.reason == Reason.INTERNAL
    assert isinstance(unanswered, Refused) and unanswered.reason == Reason.INTERNAL  # no outcome came for it
    assert fine == "done fine"


def test_stop_answers_every_queued_command_first(started) -> None:  # type: ignore[no-untyped-def]
    processor, writer = started(2)

    async def scenario() -> list[Any]:
        futures = await _submit_one_at_a_time(writer, ["a", "b", "c", "d", "e"])
        releaser = threading.Thread(target=release_each_as_sent, args=(processor, 3))
        releaser.start()
        await asyncio.to_thread(writer.stop)
        releaser.join()
        return [await f for f in futures]

    assert asyncio.run(scenario()) == [f"done {c}" for c in "abcde"]
    assert sum(len(batch) for batch in processor.sent) == 5

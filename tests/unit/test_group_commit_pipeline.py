"""The group-commit writer on the event loop: what waits in one loop
iteration goes out as one batch; batch N+1 is sent while batch N runs
(overlap_min 1 here: test_group_commit_overlap.py holds it back),
never more than PIPELINE_DEPTH at once; every caller gets its own answer,
in order; a full queue refuses with OVERLOADED; the drain answers every
queued write. A fake channel stands for the writer process so the test
decides when each batch is answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.writer import PIPELINE_DEPTH, UNSETTLED_DEPTH, GroupCommitWriter, WriterLimits
from medsettle.server import wire


class HeldChannel:
    """Records each batch sent; the test answers them."""

    depth = PIPELINE_DEPTH

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []  # each batch's request bytes
        self.writer: GroupCommitWriter | None = None
        self.is_up = True

    def open(self, writer: GroupCommitWriter) -> None:
        self.writer = writer

    def up(self) -> bool:
        return self.is_up

    def down(self) -> str | None:
        return None

    def send(self, body: bytes) -> None:
        self.sent.append([data for _, data in wire.writes_of(body)])

    def close(self) -> None:
        pass

    def answer_oldest(self) -> None:
        """Answers the oldest batch not answered: "done <request>" for each."""
        assert self.writer is not None
        batch = self.sent[self.writer.batches_committed]
        self.writer.answered([wire.settled(b"done " + data) for data in batch])


def _started(max_batch: int = 8, max_queue: int = 8) -> tuple[HeldChannel, GroupCommitWriter]:
    channel = HeldChannel()
    writer = GroupCommitWriter(channel, WriterLimits(max_batch=max_batch, max_queue=max_queue, overlap_min=1))
    writer.start()
    return channel, writer


def _submit(writer: GroupCommitWriter, names: str) -> list[asyncio.Future[bytes]]:
    return [writer.submit((wire.SETTLE, name.encode())) for name in names]


async def _answers(futures: list[asyncio.Future[bytes]]) -> list[Any]:
    out: list[Any] = []
    for future in futures:
        try:
            out.append(wire.result_of(await future))
        except Refused as refusal:
            out.append(refusal)
    return out


def test_what_waits_in_one_loop_iteration_is_one_batch_and_the_depth_is_bounded() -> None:
    async def scenario() -> None:
        channel, writer = _started(max_batch=2)
        first = _submit(writer, "abc")  # one iteration: "ab", then "c" (max_batch 2)
        await asyncio.sleep(0)
        assert channel.sent == [[b"a", b"b"], [b"c"]]
        later = _submit(writer, "de")
        await asyncio.sleep(0.05)
        assert len(channel.sent) == UNSETTLED_DEPTH == 2 and writer.queue_length() == 2  # held: two batches unsettled
        channel.answer_oldest()
        assert await _answers(first[:2]) == [b"done a", b"done b"]
        assert channel.sent[2] == [b"d", b"e"]  # the answer made room: what waited went out at once
        assert not first[2].done()
        channel.answer_oldest()
        channel.answer_oldest()
        assert await _answers(first[2:] + later) == [b"done c", b"done d", b"done e"]
        assert (writer.batches_committed, writer.commands_done) == (3, 5)
        assert writer.batch_commands.count == 3

    asyncio.run(scenario())


def test_a_settled_batch_makes_room_for_the_next_until_the_depth_is_reached() -> None:
    """A writer process says when a batch is committed and answers it after
    its fsync: the next batch goes at its word; PIPELINE_DEPTH still bounds
    the batches sent and not answered, and the answers come in order."""
    async def scenario() -> None:
        channel, writer = _started(max_batch=1)
        futures = _submit(writer, "abcdef")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"], [b"b"]]  # two unsettled
        assert writer.settled()
        await asyncio.sleep(0)
        assert channel.sent[2:] == [[b"c"]]
        assert writer.settled() and writer.settled()
        await asyncio.sleep(0)
        assert len(channel.sent) == PIPELINE_DEPTH == 4 and writer.queue_length() == 2  # four not answered
        assert writer.settled() and not writer.settled()  # a fifth "settled" names no batch
        channel.answer_oldest()
        assert await _answers(futures[:1]) == [b"done a"]
        assert channel.sent[4:] == [[b"e"]]
        for _ in range(4):
            channel.answer_oldest()
        await asyncio.sleep(0)
        assert len(channel.sent) == 6 and writer.in_flight() == 1  # f: sent, not settled, not answered
        channel.answer_oldest()  # answers without a word before (the writer thread's way)
        assert await _answers(futures) == [b"done " + name.encode() for name in "abcdef"]
        assert not writer.settled()  # nothing in flight

    asyncio.run(scenario())


def test_a_batch_whose_answers_fail_or_are_missing_fails_alone() -> None:
    async def scenario() -> None:
        channel, writer = _started()
        broken = _submit(writer, "x")
        await asyncio.sleep(0)
        short = _submit(writer, "yz")
        await asyncio.sleep(0)
        writer.answered(RuntimeError("the batch failed"))
        writer.answered([wire.settled(b"only one")])
        fine = _submit(writer, "f")
        await asyncio.sleep(0)
        channel.answer_oldest()
        [failed], unanswered, [ok] = await _answers(broken), await _answers(short), await _answers(fine)
        assert isinstance(failed, Refused) and failed.reason == Reason.INTERNAL and "RuntimeError" in failed.message
        assert all(isinstance(r, Refused) and r.reason == Reason.INTERNAL for r in unanswered)
        assert ok == b"done f"

    asyncio.run(scenario())


def test_a_full_queue_refuses_with_overloaded_and_a_given_up_caller_is_not_sent() -> None:
    async def scenario() -> None:
        channel, writer = _started(max_batch=1, max_queue=2)
        channel.is_up = False  # a child being replaced: writes wait
        waiting = _submit(writer, "ab")
        with pytest.raises(Refused) as refused:
            writer.submit((wire.SETTLE, b"c"))
        assert refused.value.reason == Reason.OVERLOADED and "retry with the same msgid" in refused.value.message
        waiting[0].cancel()  # its caller gave up
        channel.is_up = True
        writer.resume()
        assert channel.sent == [[b"b"]]
        channel.answer_oldest()
        assert await _answers(waiting[1:]) == [b"done b"]

    asyncio.run(scenario())


def test_the_drain_waits_for_every_queued_write_and_a_loss_answers_those_in_flight() -> None:
    async def scenario() -> None:
        channel, writer = _started(max_batch=1)
        futures = _submit(writer, "abc")
        await asyncio.sleep(0)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        assert not drain.done() and channel.sent == [[b"a"], [b"b"]]
        writer.lost(wire.refused(Refused(Reason.STORAGE_UNAVAILABLE, "lost; retry with the same msgid")))
        await asyncio.sleep(0.05)
        assert not drain.done() and channel.sent == [[b"a"], [b"b"]]  # "c" waits for the channel to resume
        writer.resume()  # a new child is up
        assert channel.sent == [[b"a"], [b"b"], [b"c"]]
        channel.answer_oldest()
        await asyncio.wait_for(drain, 5)
        a, b, c = await _answers(futures)
        assert isinstance(a, Refused) and isinstance(b, Refused) and a.reason == Reason.STORAGE_UNAVAILABLE
        assert c == b"done c"

    asyncio.run(scenario())


def test_a_batch_stops_at_its_request_bytes_and_a_queue_full_of_bytes_refuses() -> None:
    # Requests may be up to --max-message-bytes each: bounds in bytes, not only in writes.
    async def scenario() -> None:
        channel = HeldChannel()
        writer = GroupCommitWriter(channel, WriterLimits(max_batch=8, max_queue=8, max_batch_bytes=10,
                                                         max_queue_bytes=30, overlap_min=1))
        writer.start()
        futures = [writer.submit((wire.SETTLE, data)) for data in (b"a" * 6, b"b" * 4, b"c" * 6, b"d" * 12)]
        with pytest.raises(Refused) as full:  # 31 bytes would wait: beyond 30
            writer.submit((wire.SETTLE, b"e" * 3))
        assert full.value.reason == Reason.OVERLOADED and "request bytes" in full.value.message
        await asyncio.sleep(0)
        # 6 + 4 fit in 10; 6 does not fit beside them; 12 goes alone though over the bound (a batch holds one)
        assert [[len(data) for data in batch] for batch in channel.sent] == [[6, 4], [6]]
        for _ in range(3):
            channel.answer_oldest()
            await asyncio.sleep(0)
        assert [len(batch) for batch in channel.sent] == [2, 1, 1]
        assert [len(answer) for answer in await _answers(futures)] == [11, 9, 11, 17]
        later = writer.submit((wire.SETTLE, b"f" * 25))  # the queue is empty again: a big one is taken
        await asyncio.sleep(0)
        channel.answer_oldest()
        assert await _answers([later]) == [b"done " + b"f" * 25]

    asyncio.run(scenario())

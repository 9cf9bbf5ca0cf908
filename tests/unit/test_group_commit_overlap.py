"""The group-commit writer's dispatch rule (WriterLimits.overlap_min):
with no batch in the writer, what waits goes at once; with one there, the
next batch is sent only once overlap_min writes wait, else they wait for
its answers and go as one batch. A fake channel stands for the writer
process, so each test decides when a batch is answered; no timing."""

from __future__ import annotations

import asyncio

from medsettle.ledger.storage.writer import GroupCommitWriter, WriterLimits
from medsettle.server import wire
from tests.unit.test_group_commit_pipeline import HeldChannel, _answers, _submit


def _started(overlap_min: int, max_batch: int = 8) -> tuple[HeldChannel, GroupCommitWriter]:
    channel = HeldChannel()
    writer = GroupCommitWriter(channel, WriterLimits(max_batch=max_batch, max_queue=64, overlap_min=overlap_min))
    writer.start()
    return channel, writer


def test_with_a_batch_in_the_writer_the_next_waits_for_overlap_min_writes() -> None:
    async def scenario() -> None:
        channel, writer = _started(overlap_min=3)
        first = _submit(writer, "a")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"]]  # the writer was idle: at once
        second = _submit(writer, "b")
        await asyncio.sleep(0)
        second += _submit(writer, "c")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"]]  # two wait, fewer than 3: held over two loop iterations
        second += _submit(writer, "d")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"], [b"b", b"c", b"d"]]  # the third: sent beside the first
        channel.answer_oldest()
        channel.answer_oldest()
        assert await _answers(first + second) == [b"done a", b"done b", b"done c", b"done d"]

    asyncio.run(scenario())


def test_held_writes_go_as_one_batch_once_the_batch_in_the_writer_is_answered() -> None:
    async def scenario() -> None:
        channel, writer = _started(overlap_min=8)
        first = _submit(writer, "a")
        await asyncio.sleep(0)
        held = []
        for name in "bcd":  # one a loop iteration, as unary calls arrive
            held += _submit(writer, name)
            await asyncio.sleep(0)
        assert channel.sent == [[b"a"]]
        channel.answer_oldest()
        assert channel.sent == [[b"a"], [b"b", b"c", b"d"]]  # sent from the answer, not a loop iteration later
        assert await _answers(first) == [b"done a"]
        assert not any(future.done() for future in held)  # answered only after their own batch
        channel.answer_oldest()
        assert await _answers(held) == [b"done b", b"done c", b"done d"]

    asyncio.run(scenario())


def test_one_sends_the_next_batch_at_once_and_overlap_min_is_capped_at_max_batch() -> None:
    async def scenario() -> None:
        channel, writer = _started(overlap_min=1)
        _submit(writer, "a")
        await asyncio.sleep(0)
        _submit(writer, "b")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"], [b"b"]]

        channel, writer = _started(overlap_min=100, max_batch=2)
        _submit(writer, "a")
        await asyncio.sleep(0)
        _submit(writer, "b")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"]]
        _submit(writer, "c")
        await asyncio.sleep(0)
        assert channel.sent == [[b"a"], [b"b", b"c"]]  # a full batch never waits

    asyncio.run(scenario())


def test_a_caller_who_gave_up_while_held_is_not_settled() -> None:
    async def scenario() -> None:
        channel, writer = _started(overlap_min=8)
        _submit(writer, "a")
        await asyncio.sleep(0)
        gave_up, stays = _submit(writer, "bc")
        await asyncio.sleep(0)
        gave_up.cancel()  # its deadline passed while it was held
        channel.answer_oldest()
        assert channel.sent == [[b"a"], [b"c"]]
        channel.answer_oldest()
        assert wire.result_of(await stays) == b"done c"

    asyncio.run(scenario())


def test_the_drain_waits_for_held_writes() -> None:
    async def scenario() -> None:
        channel, writer = _started(overlap_min=8)
        futures = _submit(writer, "a")
        await asyncio.sleep(0)
        futures += _submit(writer, "b")
        await asyncio.sleep(0)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0)
        channel.answer_oldest()
        await asyncio.sleep(0)
        assert not drain.done()  # "b" was sent only now
        channel.answer_oldest()
        await drain
        assert await _answers(futures) == [b"done a", b"done b"]

    asyncio.run(scenario())

"""The group-commit writer's bookkeeping when a channel's send raises: the
batch it was sending must not stay among the batches awaiting answers, or
every later batch's answers go to the callers of the batch sent before it."""

from __future__ import annotations

import asyncio

import pytest

from medsettle.ledger.errors import Refused
from medsettle.ledger.storage.writer import PIPELINE_DEPTH, GroupCommitWriter, WriterLimits
from medsettle.server import wire


class FailingOnceChannel:
    """A channel whose first send raises (as wire.frame does for a body over
    MAX_FRAME_BYTES, or run_in_executor after its executor shut down); the
    test answers the batches that went out."""

    depth = PIPELINE_DEPTH

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.writer: GroupCommitWriter | None = None
        self.sends = 0

    def open(self, writer: GroupCommitWriter) -> None:
        self.writer = writer

    def up(self) -> bool:
        return True

    def down(self) -> str | None:
        return None

    def send(self, body: bytes) -> None:
        self.sends += 1
        if self.sends == 1:
            raise wire.FrameError("a frame of 4294967296 bytes is more than 4294967295")
        self.sent.append([data for _, data in wire.writes_of(body)])

    def close(self) -> None:
        pass


def test_a_send_that_raises_fails_its_own_batch_and_later_callers_get_their_own_answers() -> None:
    async def scenario() -> tuple[list[bytes | BaseException], list[bytes]]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: None)  # the raising send is logged by the loop
        channel = FailingOnceChannel()
        writer = GroupCommitWriter(channel, WriterLimits(max_batch=8, max_queue=64))
        writer.start()
        first = [writer.submit((wire.SETTLE, name)) for name in (b"a", b"b")]
        await asyncio.sleep(0)  # the first batch's send raises
        second = [writer.submit((wire.SETTLE, name)) for name in (b"c", b"d")]
        await asyncio.sleep(0)
        [batch] = channel.sent
        writer.answered([wire.settled(b"done " + data) for data in batch])
        await asyncio.sleep(0)
        early = await asyncio.wait_for(asyncio.gather(*first), 1.0)
        assert wire.settled(b"done c") not in early  # not the next batch's answers
        for answer in early:
            with pytest.raises(Refused):
                wire.result_of(answer)
        return await asyncio.wait_for(asyncio.gather(*second), 1.0)

    assert asyncio.run(scenario()) == [wire.settled(b"done c"), wire.settled(b"done d")]

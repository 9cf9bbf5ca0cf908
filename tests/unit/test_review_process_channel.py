"""The writer process's channel (ledger/storage/writer_process.py) driven
by the loop over real pipes, with the child played by the test: answers of
two batches that arrive in one read, the first of which lets the loop send
the next batch into a pipe whose reader is gone."""

from __future__ import annotations

import asyncio
import os

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.writer import GroupCommitWriter, WriterLimits
from medsettle.ledger.storage.writer_process import ProcessChannel
from medsettle.server import wire

import pytest


class _End:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class PlayedChild:
    """What ProcessChannel reads of a WriterProcess; the test holds the child's pipe ends."""

    def __init__(self) -> None:
        self.commands_in, commands_out = os.pipe()
        answers_in, self.answers_out = os.pipe()
        self.commands, self.answers = _End(commands_out), _End(answers_in)
        self.generation, self.down, self.starting = 0, None, False
        self.restarts_asked = 0

    def restart(self, generation: int) -> None:
        self.restarts_asked += 1
        self.down = "the played child is gone"

    def kill(self) -> None:
        pass

    def close(self) -> None:
        for fd in (self.commands.fd, self.answers.fd, self.answers_out):
            try:
                os.close(fd)
            except OSError:
                pass


def test_answers_in_one_read_after_the_child_died_raise_nothing_and_answer_each_caller_once() -> None:
    child = PlayedChild()
    raised: list[BaseException] = []

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: raised.append(context.get("exception")))
        writer = GroupCommitWriter(ProcessChannel(child), WriterLimits(overlap_min=1))  # type: ignore[arg-type]
        writer.start()
        first = writer.submit((wire.SETTLE, b"a"))
        await asyncio.sleep(0)
        second = writer.submit((wire.SETTLE, b"b"))
        await asyncio.sleep(0)
        third = writer.submit((wire.SETTLE, b"c"))  # waits: two batches in flight
        await asyncio.sleep(0)
        os.close(child.commands_in)  # the child is gone: the next send is EPIPE
        os.write(child.answers_out, wire.frame(wire.answers_body([wire.settled(b"A")]))
                 + wire.frame(wire.answers_body([wire.settled(b"B")])))
        answers = await asyncio.wait_for(asyncio.gather(first, second, third), 5.0)
        await asyncio.sleep(0.1)
        await writer.drain()
        writer.close()
        return list(answers)

    try:
        answers = asyncio.run(scenario())
    finally:
        child.close()
    assert answers[0] == wire.settled(b"A")
    for answer in answers[1:]:
        if answer != wire.settled(b"B"):
            with pytest.raises(Refused) as lost:
                wire.result_of(answer)
            assert lost.value.reason == Reason.STORAGE_UNAVAILABLE
    assert raised == []

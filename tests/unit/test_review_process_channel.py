"""The writer process's channel (ledger/storage/writer_process.py) driven
by the loop over real pipes, with the child played by the test: answers of
two batches that arrive in one read, the first of which lets the loop send
the next batch into a pipe whose reader is gone; a child that says a batch
is settled before its answers (the next goes then), or says so of none."""

from __future__ import annotations

import asyncio
import os

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.storage.writer import SYNCING_MIN, GroupCommitWriter, WriterLimits
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


def _read_batches(fd: int) -> list[list[bytes]]:
    """The batches the loop sent to the played child so far (their request bytes)."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return []
    return [[request for _, request in wire.writes_of(body)] for body in wire.FrameReader().feed(data)]


def test_a_settled_batch_lets_the_next_go_before_its_answers_and_a_stray_settled_kills_the_child() -> None:
    child = PlayedChild()
    killed: list[bool] = []
    child.kill = lambda: killed.append(True)  # type: ignore[method-assign]
    settled = wire.frame(b"")

    async def scenario() -> tuple[list[list[bytes]], list[list[bytes]], list[bytes], bytes, list[bytes]]:
        writer = GroupCommitWriter(ProcessChannel(child))  # type: ignore[arg-type]
        writer.start()
        first = [writer.submit((wire.SETTLE, b"a"))]
        await asyncio.sleep(0.05)
        names = [b"w%d" % i for i in range(SYNCING_MIN)]  # enough to go while a's fsync runs
        more = [writer.submit((wire.SETTLE, name)) for name in names]
        await asyncio.sleep(0.05)
        before = _read_batches(child.commands_in)  # a alone: the rest wait while a is being settled
        os.write(child.answers_out, settled)  # a committed, its fsync to come: the ones waiting go now
        await asyncio.sleep(0.05)
        after = _read_batches(child.commands_in)
        os.write(child.answers_out, wire.frame(wire.answers_body([wire.settled(b"A")])) + settled
                 + wire.frame(wire.answers_body([wire.settled(n.upper()) for n in names])))
        answers = list(await asyncio.wait_for(asyncio.gather(*first, *more), 5.0))
        stray = writer.submit((wire.SETTLE, b"f"))
        await asyncio.sleep(0.05)
        os.write(child.answers_out, settled + settled)  # f's, then one for no batch: the protocol is broken
        lost = await asyncio.wait_for(stray, 5.0)
        await writer.drain()
        writer.close()
        return before, after, answers, lost, names

    try:
        before, after, answers, lost, names = asyncio.run(scenario())
    finally:
        child.close()
        os.close(child.commands_in)
    assert before == [[b"a"]] and after == [names]
    assert answers == [wire.settled(n.upper()) for n in [b"a", *names]]
    with pytest.raises(Refused) as refused:
        wire.result_of(lost)
    assert refused.value.reason == Reason.STORAGE_UNAVAILABLE and killed == [True]

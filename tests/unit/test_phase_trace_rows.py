"""The phase trace's rows stay true (ledger/storage/phase_trace.py): a
caller that gave up before its batch was sent leaves no mark behind; a
send that raised leaves no row, so each later row stays with its own
batch; a trace dumped twice has one header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from medsettle.ledger.errors import Refused
from medsettle.ledger.storage.phase_trace import ENV, PhaseTrace
from medsettle.ledger.storage.writer import GroupCommitWriter, WriterLimits
from medsettle.server import wire
from tests.unit.test_review_group_commit import FailingOnceChannel


def _traced_writer(tmp_path: Path, monkeypatch) -> tuple[FailingOnceChannel, GroupCommitWriter]:  # type: ignore[no-untyped-def]
    """A writer whose channel's first send raises, its phase trace on."""
    monkeypatch.setenv(ENV, str(tmp_path))
    channel = FailingOnceChannel()
    writer = GroupCommitWriter(channel, WriterLimits(max_batch=8, max_queue=64, overlap_min=1))
    writer.start()
    assert writer._trace is not None
    return channel, writer


def test_a_caller_that_gave_up_before_its_batch_leaves_no_mark(tmp_path, monkeypatch) -> None:
    async def scenario() -> None:
        channel, writer = _traced_writer(tmp_path, monkeypatch)
        assert writer._trace is not None
        gave_up = writer.submit((wire.SETTLE, b"a"))
        kept = writer.submit((wire.SETTLE, b"b"))
        gave_up.cancel()  # before the loop sends the batch
        channel.sends = 1  # this channel's first send raises: not this test's
        await asyncio.sleep(0)
        assert channel.sent == [[b"b"]]
        assert writer._trace.marks == {}
        writer.answered([wire.settled(b"done")])
        assert wire.result_of(await kept) == b"done"

    asyncio.run(scenario())


def test_waiting_callers_refused_leave_no_marks(tmp_path, monkeypatch) -> None:
    async def scenario() -> None:
        _, writer = _traced_writer(tmp_path, monkeypatch)
        assert writer._trace is not None
        waiting = writer.submit((wire.SETTLE, b"a"))
        writer.refuse_waiting(b"refused")  # before the loop sends it
        assert await waiting == b"refused"
        assert writer._trace.marks == {}

    asyncio.run(scenario())


def test_a_send_that_raised_leaves_no_row_and_later_rows_keep_their_batch(tmp_path, monkeypatch) -> None:
    async def scenario() -> None:
        channel, writer = _traced_writer(tmp_path, monkeypatch)
        assert writer._trace is not None
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)  # the raising send is logged
        failed = writer.submit((wire.SETTLE, b"boom"))
        await asyncio.sleep(0)  # the first send raises
        assert failed.done()  # answered at once with a refusal
        with pytest.raises(Refused):
            wire.result_of(failed.result())
        later = [writer.submit((wire.SETTLE, name)) for name in (b"x", b"y", b"z")]
        await asyncio.sleep(0)
        assert channel.sent == [[b"x", b"y", b"z"]]
        writer.answered([wire.settled(data) for data in channel.sent[0]])
        await asyncio.gather(*later)
        assert [row[0] for row in writer._trace.rows] == [3]  # the row answered is the 3-write batch's

    asyncio.run(scenario())


def test_a_trace_dumped_twice_has_one_header(tmp_path) -> None:
    trace = PhaseTrace("part", ("a", "b"), str(tmp_path))
    trace.add(1.0, 2)
    trace.dump()
    trace.add(3.0, 4)
    trace.dump()
    lines = Path(trace.path).read_text().splitlines()
    assert lines == ["a\tb", "1.000000\t2", "3.000000\t4"]

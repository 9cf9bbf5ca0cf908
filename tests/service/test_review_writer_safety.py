"""Adversarial checks of the write path through a real writer process: one
hostile request must cost only its own answer, never the child (whose
death loses every batch in flight) nor another caller's settlement."""

from __future__ import annotations

import asyncio

import pytest

from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.service import open_reference
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.writer import GroupCommitWriter
from medsettle.ledger.storage.writer_process import ProcessChannel, WriterProcess
from medsettle.server import wire
from medsettle.v1 import settlement_pb2 as pb

KEY = b"k" * 32


def _run(process: WriterProcess, writes: list[tuple[int, bytes]]) -> list[bytes]:
    """The answers of writes sent as one batch through the loop, as the server sends them."""
    async def run() -> list[bytes]:
        writer = GroupCommitWriter(ProcessChannel(process))
        writer.start()
        try:
            return list(await asyncio.gather(*[writer.submit(w) for w in writes]))
        finally:
            await writer.drain()
            writer.close()
    return asyncio.run(run())


def _outcome(answer: bytes):  # type: ignore[no-untyped-def]
    try:
        return pb.SettleResult.FromString(wire.result_of(answer))
    except Refused as refusal:
        return refusal


@pytest.fixture
def writer_with_key(tmp_path, clock):  # type: ignore[no-untyped-def]
    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    process = WriterProcess(db, clock, KEY)
    yield store, process
    process.close()
    store.close()


def test_an_odd_e_cert_token_is_refused_alone_and_the_writer_process_lives(writer_with_key, bill) -> None:
    store, process = writer_with_key
    odd = bill(msgid="ODD1")
    odd.psn_no = ""
    odd.ecert_token = "MSEC1.eyJhIjoxfQ.\u00e9"
    refused, settled = map(_outcome, _run(process, [(wire.SETTLE, odd.SerializeToString()),
                                                   (wire.SETTLE, bill(msgid="GOOD1").SerializeToString())]))
    assert isinstance(refused, Refused) and refused.reason == Reason.FIELD_INVALID
    assert [v.field for v in refused.violations] == ["ecert_token"]
    assert isinstance(settled, pb.SettleResult) and settled.msgid == "GOOD1"
    assert process.restarts == 0


def test_large_pipelined_batches_cross_the_non_blocking_pipes_whole_and_in_order(tmp_path, clock, bill) -> None:
    """Batches far larger than a pipe's buffer (each about half a megabyte: 60 bills of 500 lines) go out in
    many partial writes while the batch before runs; every caller gets the answer of its own bill."""
    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    process = WriterProcess(db, clock)
    lines = [("S0001", 1, 10 + i % 7) for i in range(500)]
    people = ["44010000000000000001", "44030000000000000001"]
    requests = [bill(msgid=f"BIG{i:04d}", lines=lines, psn_no=people[i % 2],
                     insuplc="440100" if i % 2 == 0 else "440300") for i in range(180)]

    async def run() -> list[bytes]:
        writer = GroupCommitWriter(ProcessChannel(process))
        writer.start()
        try:
            futures = []
            for start in range(0, len(requests), 60):  # three loop turns: three batches, two in flight
                futures += [writer.submit((wire.SETTLE, r.SerializeToString())) for r in requests[start:start + 60]]
                await asyncio.sleep(0)
            return list(await asyncio.gather(*futures))
        finally:
            await writer.drain()
            writer.close()

    try:
        outcomes = [_outcome(a) for a in asyncio.run(run())]
        assert [o.msgid for o in outcomes] == [r.msgid for r in requests]
        assert [len(o.line_splits) for o in outcomes] == [500] * len(requests)
        assert process.restarts == 0
        assert store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == len(requests)
    finally:
        process.close()
        store.close()

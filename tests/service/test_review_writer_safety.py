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

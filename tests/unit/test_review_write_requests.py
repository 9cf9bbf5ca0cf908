"""Hostile write requests on the writer's side (server/writes.py): whatever
the bytes of one request, it is answered alone, with a refusal naming its
field, and the other writes of its batch are answered as if it were absent.
Since the writer parses and validates the request bytes, an exception that
escapes one request's check fails its whole batch (the writer thread) or
kills the writer process (every batch in flight is lost)."""

from __future__ import annotations

import datetime as dt

import pytest

from medsettle.ledger import ecert
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Reason, Refused
from medsettle.server import wire
from medsettle.server.writes import WriteRequests
from medsettle.v1 import settlement_pb2 as pb

CLOCK = FixedClock(dt.datetime(2026, 11, 25, 10, 0, tzinfo=CHINA_TZ))
KEY = b"k" * 32


class Settling:
    """A processor that settles nothing: it answers each command with a refusal naming its msgid."""

    def __init__(self) -> None:
        self.batches: list[list] = []  # type: ignore[type-arg]

    def run_batch(self, commands):  # type: ignore[no-untyped-def]
        self.batches.append(list(commands))
        return [Refused(Reason.NO_POLICY, f"reached the batch: {c.bill.msgid}") for c in commands]


def _settle(msgid: str, **fields: object) -> bytes:
    request = dict(msgid=msgid, fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
                   insuplc_admdvs="440100", visit_type=1,
                   fee_lines=[pb.FeeLine(feedetl_sn="1", hilist_code="S0001", cnt=1, pric_fen=100)])
    return pb.SettleRequest(**{**request, **fields}).SerializeToString()  # type: ignore[arg-type]


def _refusal(answer: bytes) -> Refused:
    with pytest.raises(Refused) as refused:
        wire.result_of(answer)
    return refused.value


def _genuine_token() -> str:
    return ecert.issue(KEY, "44010000000000000001", CLOCK.now(), nonce="0" * 31 + "1")


ODD_SIGNATURES = [
    pytest.param("MSEC1.eyJhIjoxfQ.\u00e9t\u00e9", id="non-ascii-signature"),
    pytest.param("MSEC1.eyJhIjoxfQ.\u4e2d\u6587", id="cjk-signature"),
]


@pytest.mark.parametrize("token", ODD_SIGNATURES)
def test_an_e_cert_token_with_odd_characters_is_refused_alone_naming_the_field(token: str) -> None:
    processor = Settling()
    odd, good = WriteRequests(processor, CLOCK, KEY).run_batch([
        (wire.SETTLE, _settle("M1", ecert_token=token, psn_no="")),
        (wire.SETTLE, _settle("M2")),
    ])
    refused = _refusal(odd)
    assert refused.reason == Reason.FIELD_INVALID
    assert [v.field for v in refused.violations] == ["ecert_token"]
    assert _refusal(good).message == "reached the batch: M2"
    assert [[c.bill.msgid for c in batch] for batch in processor.batches] == [["M2"]]


def test_a_genuine_e_cert_token_reaches_the_batch_with_its_person() -> None:
    """The control of the test above: the same batch with a genuine token."""
    processor = Settling()
    WriteRequests(processor, CLOCK, KEY).run_batch([
        (wire.SETTLE, _settle("M1", ecert_token=_genuine_token(), psn_no="")),
        (wire.SETTLE, _settle("M2")),
    ])
    [[first, second]] = processor.batches
    assert (first.bill.psn_no, first.bill.ecert_nonce, first.bill.ecert_token) == ("44010000000000000001", "0" * 31 + "1", "")
    assert second.bill.msgid == "M2"


@pytest.mark.parametrize("data", [
    pytest.param(b"\x0a\x02\xff\xfe", id="msgid-bad-utf8"),
    pytest.param(b"\x12\x03\xed\xa0\x80", id="code-lone-surrogate-utf8"),
    pytest.param(b"\x3a\x05\x0a\x03\xc3\x28\x41", id="fee-line-sn-bad-utf8"),
    pytest.param(b"\x3a\xff\xff\xff\xff\x0f", id="length-beyond-the-message"),
    pytest.param(b"\x08", id="truncated-tag"),
])
def test_undecodable_request_bytes_are_refused_alone_naming_the_request(data: bytes) -> None:
    processor = Settling()
    bad, good = WriteRequests(processor, CLOCK, KEY).run_batch([(wire.SETTLE, data), (wire.SETTLE, _settle("M2"))])
    refused = _refusal(bad)
    assert refused.reason == Reason.FIELD_INVALID and [v.field for v in refused.violations] == ["request"]
    assert _refusal(good).message == "reached the batch: M2"


@pytest.mark.parametrize("text", ["\u0000", "\u202e\u00e9\U0001f600", "\"]}\\", "x" * 70_000])
def test_a_refusal_with_odd_characters_crosses_the_wire_whole(text: str) -> None:
    """A refusal's message, fields and metadata come back as sent, whatever their characters."""
    from medsettle.ledger.errors import FieldViolation

    refusal = Refused(Reason.FIELD_INVALID, f"bad {text}", [FieldViolation(f"fee_lines[0].{text}", text)],
                      {"value": text})
    back = _refusal(wire.refused(refusal))
    assert (back.reason, back.message, back.metadata) == (refusal.reason, refusal.message, refusal.metadata)
    assert [(v.field, v.description) for v in back.violations] == [(v.field, v.description) for v in refusal.violations]

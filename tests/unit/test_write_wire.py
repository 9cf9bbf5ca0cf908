"""The bytes between the gRPC process and the writer (server/wire.py,
server/writes.py): frames survive any cut of the byte stream, answers
carry a refusal whole, and the writer's side answers every write of a
batch in order, even when the batch raises."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import FieldViolation, Reason, Refused
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand
from medsettle.server import convert, wire
from medsettle.server.writes import WriteRequests
from medsettle.v1 import settlement_pb2 as pb

PROPS = settings(max_examples=200, deadline=None)
writes = st.lists(st.tuples(st.sampled_from(wire.KINDS), st.binary(max_size=300)), max_size=20)


@PROPS
@given(writes)
def test_a_batch_body_reads_back_as_its_writes(batch: list[tuple[int, bytes]]) -> None:
    assert wire.writes_of(wire.batch_body(batch)) == batch


@PROPS
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_an_answers_body_reads_back_as_its_answers(answers: list[bytes]) -> None:
    assert wire.answers_of(wire.answers_body(answers)) == answers


@PROPS
@given(st.lists(st.binary(max_size=200), max_size=12), st.data())
def test_frames_come_out_whole_whatever_the_reads_boundaries(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(wire.frame(body) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = wire.FrameReader()
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += reader.feed(stream[start:cut])
        start = cut
    assert out == bodies and reader.pending_bytes() == 0


def test_a_frame_split_across_reads_waits_for_its_rest_and_many_in_one_read_come_out_together() -> None:
    reader = wire.FrameReader()
    first, second, third = wire.frame(b"first"), wire.frame(b""), wire.frame(b"third" * 100)
    assert reader.feed(first[:2]) == []  # inside the length
    assert reader.feed(first[2:6]) == []  # inside the body
    assert reader.pending_bytes() == 6
    assert reader.feed(first[6:] + second + third[:3]) == [b"first", b""]
    assert reader.feed(third[3:]) == [b"third" * 100]
    assert reader.feed(first + second + third) == [b"first", b"", b"third" * 100]


@pytest.mark.parametrize("body", [b"", b"\x01\x00\x00", b"\x01\x00\x00\x00\x00\x05\x00\x00\x00ab",
                                  wire.batch_body([(0, b"x")]) + b"extra"])
def test_a_body_that_is_no_batch_is_a_frame_error(body: bytes) -> None:
    with pytest.raises(wire.FrameError):
        wire.writes_of(body)


def test_a_refusal_crosses_whole() -> None:
    refusal = Refused(Reason.FIELD_INVALID, "invalid field(s): psn_no, fee_lines[0].cnt",
                      [FieldViolation("psn_no", "must be 20 digits"), FieldViolation("fee_lines[0].cnt", "must be ≥ 1")],
                      {"violations_total": "2"})
    with pytest.raises(Refused) as crossed:
        wire.result_of(wire.refused(refusal))
    assert crossed.value == refusal and str(crossed.value) == str(refusal)
    assert wire.result_of(wire.settled(b"\x0a\x01S")) == b"\x0a\x01S"


def test_the_response_bytes_are_the_response_message() -> None:
    result = pb.SettleResult(setl_id="S1", msgid="M" * 300, line_splits=[pb.LineSplit(feedetl_sn="1")] * 5)
    data = result.SerializeToString()
    assert pb.SettleResponse.FromString(wire.response_bytes(data)) == pb.SettleResponse(result=result)
    assert pb.ReverseResponse.FromString(wire.response_bytes(b"")) == pb.ReverseResponse(result=pb.SettleResult())


CLOCK = FixedClock(dt.datetime(2026, 11, 25, 10, 0, tzinfo=CHINA_TZ))


class Recording:
    """A processor that records its batches and answers each with `answer(command)`, or raises."""

    def __init__(self, answer=None, error: Exception | None = None) -> None:  # type: ignore[no-untyped-def]
        self.batches: list[list] = []
        self._answer, self._error = answer, error

    def run_batch(self, commands):  # type: ignore[no-untyped-def]
        self.batches.append(list(commands))
        if self._error is not None:
            raise self._error
        return [self._answer(c) for c in commands]


def _settle(msgid: str, code: str = "H44010100001") -> bytes:
    return pb.SettleRequest(msgid=msgid, fixmedins_code=code, psn_no="44010000000000000001", insutype=310,
                            insuplc_admdvs="440100", visit_type=1,
                            fee_lines=[pb.FeeLine(feedetl_sn="1", hilist_code="S0001", cnt=1, pric_fen=100)]
                            ).SerializeToString()


def test_the_writer_side_answers_each_write_in_order_refusing_bad_ones_before_the_batch() -> None:
    processor = Recording(answer=lambda c: Refused(Reason.NO_POLICY, f"no policy for {getattr(c, 'bill', c).msgid}"))
    answers = WriteRequests(processor, CLOCK, None).run_batch([
        (wire.SETTLE, _settle("M1")),
        (wire.SETTLE, b"\xff\xff not a message"),
        (wire.SETTLE, _settle("")),  # no msgid: refused by validation, naming it
        (wire.PRE_SETTLE, pb.PreSettleRequest(request=pb.SettleRequest.FromString(_settle("M2"))).SerializeToString()),
        (wire.REVERSE, pb.ReverseRequest(msgid="R1", fixmedins_code="H44010100001", setl_id="S000000000001").SerializeToString()),
        (77, b""),
    ])
    [batch] = processor.batches
    assert [type(c) for c in batch] == [SettleCommand, SettleCommand, ReverseCommand]
    assert [c.persist for c in batch[:2]] == [True, False] and batch[2].setl_id == "S000000000001"
    refusals = []
    for answer in answers:
        with pytest.raises(Refused) as refused:
            wire.result_of(answer)
        refusals.append(refused.value)
    assert [r.reason for r in refusals] == [Reason.NO_POLICY, Reason.FIELD_INVALID, Reason.FIELD_INVALID,
                                            Reason.NO_POLICY, Reason.NO_POLICY, Reason.INTERNAL]
    assert refusals[0].message == "no policy for M1" and refusals[3].message == "no policy for M2"
    assert [v.field for v in refusals[1].violations] == ["request"] and str(refusals[1]) == "FIELD_INVALID: request: undecodable"
    assert "msgid" in [v.field for v in refusals[2].violations]


def test_a_batch_that_raises_fails_each_of_its_writes_and_rolls_back() -> None:
    rollbacks: list[int] = []
    requests = WriteRequests(Recording(error=RuntimeError("disk on fire")), CLOCK, None, lambda: rollbacks.append(1))
    answers = requests.run_batch([(wire.SETTLE, _settle("M1")), (wire.SETTLE, _settle("M2"))])
    for answer in answers:
        with pytest.raises(Refused) as refused:
            wire.result_of(answer)
        assert refused.value.reason == Reason.INTERNAL and "RuntimeError" in refused.value.message
    assert rollbacks == [1]


def test_a_settled_write_answers_its_result_message() -> None:
    from medsettle.ledger.settlement.model import ClrType, LineSplit, PayLoc, Settlement, SettlementKind, Split
    from medsettle.ledger.reference.models import Category

    settlement = Settlement(
        "S000000000007", "M1", "H44010100001", "44010000000000000001", 310, "440100", "440100", ClrType(11),
        PayLoc(2), SettlementKind(1), "", dt.datetime(2026, 11, 25, 2, 0, 0, 123456, tzinfo=dt.timezone.utc), "2026-11",
        Split(100, 0, 0, 0, 100, 0, 80, 80, 20, 0, 20, 0, 500, (LineSplit("1", Category.A, 100, 0, 0, 0, 100),)),
        ("RULE-1",), "H44010100001")
    [answer] = WriteRequests(Recording(answer=lambda c: settlement), CLOCK, None).run_batch([(wire.SETTLE, _settle("M1"))])
    result = pb.SettleResult.FromString(wire.result_of(answer))
    assert result == convert.result_pb(settlement)
    assert convert.settlement_from_pb(result) == settlement  # the gateway reads it back so


def test_a_bill_sent_by_the_gateway_reads_back_as_itself() -> None:
    from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription, VisitType

    bill = Bill("M1", "H44010100001", "44010000000000000001", 310, "440100", VisitType(1),
                (FeeLine("1", "S0001", 2, 150), FeeLine("2", "S0002", 1, 99)), True, "J06.9", "2026-11-01", "RX1",
                "H44010100002", 500, "token", prescription=Prescription("RX1", "D1", (("S0001", 2),), 3),
                pharmacist_id="PH1")
    assert convert.bill_from_pb(convert.bill_pb(bill)) == bill

"""Hostile and broken input through a real channel, driven by hypothesis:
well-formed bills mutated field by field (alone, in SettleStream feeds and in SettleBatchStream batches),
random read and reversal requests,
and raw bytes that are no protobuf at all. Every call gets a defined status
(never INTERNAL or UNKNOWN), every INVALID_ARGUMENT for a malformed field
names it, the server stays SERVING, and the ledger balances afterwards.

CI runs FUZZ_EXAMPLES (default 120) examples of 10 to FUZZ_BATCH (default 20)
requests; `FUZZ_EXAMPLES=3000 pytest tests/service/test_fuzz.py` runs longer.
"""

from __future__ import annotations

import os
import random
from collections import Counter

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.v1 import settlement_pb2 as pb
from medsettle.v1 import settlement_pb2_grpc as pb_grpc

from conftest import make_bill

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
FUZZ_BATCH = int(os.environ.get("FUZZ_BATCH", "20"))
DEFINED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
}  # no overload here: RESOURCE_EXHAUSTED would be a status too large for its trailers
PERSONS = [("44010000000000000001", "440100", 310), ("44030000000000000001", "440300", 310),
           ("13010000000000000001", "130100", 310), ("44010000000000000002", "440100", 390)]
CODES = ["H44010100001", "H44030100001", "H13010100001", "P44010100001", "H44010100901"]
ITEMS = ["XA0101", "XB0201", "XB0303", "XC0401", "S0001", "S0002", "C0001"]
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789０１２３\n\t -_.", max_size=12),
    st.integers(0, 5000).map(lambda n: "9" * n),
    st.sampled_from(["", " ", "\x00", "H44010100001\n", "４４０１００", "'; DROP TABLE settlements;--", "S000000000001"]),
)
STRING_FIELDS = ["msgid", "fixmedins_code", "psn_no", "insuplc_admdvs", "diag_code", "prior_offline_diag_date",
                 "rx_id", "prescribing_fixmedins_code", "ecert_token"]
LINE_STRINGS = ["feedetl_sn", "hilist_code"]
LINE_INTS = ["cnt", "pric_fen"]

seen: Counter[str] = Counter()


@st.composite
def mutated_bill(draw: st.DrawFn) -> pb.SettleRequest:
    psn_no, insuplc, insutype = draw(st.sampled_from(PERSONS))
    lines = [(draw(st.sampled_from(ITEMS)), draw(st.integers(1, 3)), draw(st.integers(1, 50_000)))
             for _ in range(draw(st.integers(1, 4)))]
    request = make_bill(code=draw(st.sampled_from(CODES)), psn_no=psn_no, insuplc=insuplc, insutype=insutype,
                        visit=draw(st.sampled_from([1, 2, 3])), lines=lines, acct=draw(st.booleans()),
                        msgid=draw(st.sampled_from([None, "FUZZ-REPEAT-1", "FUZZ-REPEAT-2"])))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["string", "enum", "money", "line", "lines"]))
        if kind == "string":
            setattr(request, draw(st.sampled_from(STRING_FIELDS)), draw(NASTY_TEXT))
        elif kind == "enum":
            setattr(request, draw(st.sampled_from(["insutype", "visit_type"])), draw(INT32))
        elif kind == "money":
            request.delivery_fee_fen = draw(INT64)
        elif kind == "line" and request.fee_lines:
            line = request.fee_lines[draw(st.integers(0, len(request.fee_lines) - 1))]
            if draw(st.booleans()):
                setattr(line, draw(st.sampled_from(LINE_STRINGS)), draw(NASTY_TEXT))
            else:
                setattr(line, draw(st.sampled_from(LINE_INTS)), draw(INT64))
        else:
            count = draw(st.sampled_from([0, 2, 499, 500, 501]))
            del request.fee_lines[:]
            request.fee_lines.extend(pb.FeeLine(feedetl_sn=str(i % 400), hilist_code="S0001", cnt=1, pric_fen=10)
                                     for i in range(count))
    return request


def _one_institution(items: list[pb.SettleStreamRequest]) -> list[pb.SettleStreamRequest]:
    """A feed is one institution's: items keep the first's code unless a mutation broke theirs."""
    for item in items[1:]:
        if item.request.fixmedins_code in CODES:
            item.request.fixmedins_code = items[0].request.fixmedins_code
    return items


reads = st.one_of(
    st.builds(lambda c, s, m: ("GetSettlement", pb.GetSettlementRequest(fixmedins_code=c, setl_id=s, msgid=m)),
              st.sampled_from(CODES) | NASTY_TEXT, NASTY_TEXT, NASTY_TEXT),
    st.builds(lambda c, p, t, n: ("ListSettlements", pb.ListSettlementsRequest(fixmedins_code=c, setlym=p, clr_type=t, limit=n)),
              st.sampled_from(CODES) | NASTY_TEXT, st.sampled_from(["2026-10", "2026-13", "2026-1"]) | NASTY_TEXT,
              INT32, st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda c, p, t, n, f: ("ReconcileTotals", pb.ReconcileTotalsRequest(
        fixmedins_code=c, setlym=p, clr_type=t, institution_totals=pb.Totals(setl_cnt=n, medfee_sumamt_fen=f))),
              st.sampled_from(CODES) | NASTY_TEXT, st.sampled_from(["2026-10"]) | NASTY_TEXT, INT32, INT64, INT64),
    st.builds(lambda m, c, s: ("Reverse", pb.ReverseRequest(msgid=m, fixmedins_code=c, setl_id=s)),
              NASTY_TEXT, st.sampled_from(CODES) | NASTY_TEXT,
              st.sampled_from([f"S{n:012d}" for n in range(1, 6)]) | NASTY_TEXT),
)
calls = st.one_of(
    mutated_bill().map(lambda r: ("Settle", r)),
    mutated_bill().map(lambda r: ("PreSettle", pb.PreSettleRequest(request=r))),
    reads,
    st.binary(max_size=200).map(lambda b: ("Settle", b)),
    st.lists(mutated_bill().map(lambda r: pb.SettleStreamRequest(request=r)), min_size=1, max_size=6).map(
        lambda items: ("SettleStream", _one_institution(items))),
    # The same feeds over SettleBatchStream, cut into messages of 1-3 bills.
    st.tuples(st.lists(mutated_bill().map(lambda r: pb.SettleStreamRequest(request=r)), min_size=1, max_size=6),
              st.integers(1, 3)).map(lambda fed: ("SettleBatchStream", (_one_institution(fed[0]), fed[1]))),
)


def _code_of(request: object) -> str:
    if isinstance(request, pb.PreSettleRequest):
        return request.request.fixmedins_code
    return getattr(request, "fixmedins_code", "")


def _stream_call(channel: grpc.Channel, server, items: list[pb.SettleStreamRequest],  # type: ignore[no-untyped-def]
                 per_message: int = 0) -> tuple[grpc.StatusCode, grpc.RpcError | None]:
    """A SettleStream (per_message > 0: a SettleBatchStream of that many bills
    per message) as its first item's institution; each item's own status must be defined too."""
    token = server.tokens.get(items[0].request.fixmedins_code, server.operator_token)
    metadata = [("authorization", f"Bearer {token}")]
    try:
        if per_message:
            stream = channel.stream_stream("/medsettle.v1.SettlementService/SettleBatchStream",
                                           request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=pb.SettleBatchStreamResponse.FromString)
            messages = [pb.SettleBatchStreamRequest(requests=[i.request for i in items[n:n + per_message]])
                        for n in range(0, len(items), per_message)]
            answers = [a for m in stream(iter(messages), timeout=10, metadata=metadata) for a in m.items]
        else:
            stream = channel.stream_stream("/medsettle.v1.SettlementService/SettleStream",
                                           request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=pb.SettleStreamResponse.FromString)
            answers = list(stream(iter(items), timeout=10, metadata=metadata))
    except grpc.RpcError as error:
        return error.code(), error  # type: ignore[attr-defined]
    assert [a.seq for a in answers] == list(range(len(items)))
    codes = {code.value[0]: code for code in grpc.StatusCode}
    for answer in answers:
        seen[f"stream item {codes[answer.status.code].name}"] += 1
        assert codes[answer.status.code] in DEFINED, answer.status
        if answer.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]:
            assert answer.status.field_violations and all(v.field for v in answer.status.field_violations)
    return grpc.StatusCode.OK, None


def _call(channel: grpc.Channel, server, method: str, request: object) -> tuple[grpc.StatusCode, grpc.RpcError | None]:  # type: ignore[no-untyped-def]
    if method == "SettleStream":
        return _stream_call(channel, server, request)  # type: ignore[arg-type]
    if method == "SettleBatchStream":
        return _stream_call(channel, server, *request)  # type: ignore[misc]
    token = server.tokens.get(_code_of(request), server.operator_token) if _code_of(request) else server.operator_token
    streaming = method == "ListSettlements"
    serialize = (lambda b: b) if isinstance(request, bytes) else (lambda m: m.SerializeToString())
    path = f"/medsettle.v1.SettlementService/{method}"
    stub = (channel.unary_stream if streaming else channel.unary_unary)(path, request_serializer=serialize,
                                                                         response_deserializer=lambda b: b)
    try:
        answer = stub(request, timeout=10, metadata=[("authorization", f"Bearer {token}")])
        if streaming:
            for _ in answer:
                pass
    except grpc.RpcError as error:
        return error.code(), error  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, None


def _check_violations_named(error: grpc.RpcError) -> None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "a refusal carries rich details"
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            assert bad.field_violations and all(v.field for v in bad.field_violations)
            return
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.reason, "every refusal names its reason"
    raise AssertionError("INVALID_ARGUMENT without a BadRequest naming the field")


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
@given(batch=st.lists(calls, min_size=FUZZ_BATCH // 2, max_size=FUZZ_BATCH), seed=st.integers(0, 2**32))
def test_every_fuzzed_call_gets_a_defined_status_and_the_ledger_balances(server, channel, batch, seed):
    random.Random(seed).shuffle(batch)
    for method, request in batch:
        code, error = _call(channel, server, method, request)
        seen[code.name] += 1
        assert code in DEFINED, f"{method} answered {code.name}: {error.details() if error else ''}"  # type: ignore[union-attr]
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            _check_violations_named(error)  # type: ignore[arg-type]
    balances = server.service.store.book_balances()
    assert trial_balance_breaks(balances) == [] and reciprocity_breaks(balances) == []
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_fuzz_report():
    """Prints how many fuzzed calls were answered with which status (run with -s)."""
    print(f"\nfuzzed calls: {sum(seen.values())} by status: {dict(seen)}")

"""server/result_bytes.py writes SettleResult bytes without upb: for any
settlement they must be exactly upb's serialization of result_pb's message
(compiled and interpreted: CI runs the suite both ways), and a value no
field can hold is refused as upb refuses it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS,
    ClrType,
    LineSplit,
    PayLoc,
    Settlement,
    SettlementKind,
    Split,
)
from medsettle.server.convert import result_pb
from medsettle.server.result_bytes import settle_result

PROPS = settings(max_examples=300, deadline=None)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The edges of every varint length (1 to 10 bytes) and of int64, and the rest at random.
EDGES = sorted({sign * edge for bits in range(0, 64, 7) for edge in (2**bits - 1, 2**bits) for sign in (1, -1)}
               | {INT64_MIN, INT64_MAX, 0})
int64s = st.one_of(st.sampled_from([e for e in EDGES if INT64_MIN <= e <= INT64_MAX]), st.integers(INT64_MIN, INT64_MAX))
int32s = st.one_of(st.sampled_from([0, 1, 310, 390, 127, 128, -1, -(2**31), 2**31 - 1]), st.integers(-(2**31), 2**31 - 1))
# Any unicode (surrogates excluded: no str of them encodes), sometimes long enough for a 2-byte length.
texts = st.one_of(st.text(max_size=12), st.text(min_size=100, max_size=300))
zones = st.one_of(st.sampled_from([dt.timezone.utc, CHINA_TZ]),
                  st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59))
                  .map(dt.timezone))
line_splits = st.builds(LineSplit, texts, st.sampled_from(Category), int64s, int64s, int64s, int64s, int64s)


@st.composite
def settlements(draw: st.DrawFn) -> Settlement:
    amounts = [draw(st.one_of(st.just(0), int64s)) for _ in range(len(AMOUNT_FIELDS) + 1)]
    split = Split(*amounts, line_splits=tuple(draw(st.lists(line_splits, max_size=40))))
    at = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=zones))
    kind = draw(st.sampled_from(SettlementKind))
    return Settlement(
        draw(texts), draw(texts), draw(texts), draw(texts), draw(int32s), draw(texts), draw(texts),
        draw(st.sampled_from(ClrType)), draw(st.sampled_from(PayLoc)), kind,
        draw(texts) if kind is SettlementKind.REVERSAL else "", at, draw(texts), split,
        tuple(draw(st.lists(st.text(max_size=20), max_size=4))), draw(texts),
    )


PLAIN = Settlement(
    "S000000000001", "M1", "H44010100001", "44010000000000000001", 310, "440100", "440100", ClrType.OUTPATIENT,
    PayLoc.LOCAL, SettlementKind.SETTLE, "", dt.datetime(2026, 12, 6, 11, 30, tzinfo=dt.timezone.utc), "2026-12",
    Split(300, 0, 0, 0, 300, 0, 210, 210, 90, 0, 90, 0, 1_000, (LineSplit("1", Category.A, 300, 0, 0, 0, 300),)),
)
EMPTY = Settlement("", "", "", "", 0, "", "", ClrType.OUTPATIENT, PayLoc.LOCAL, SettlementKind.SETTLE, "",
                   dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), "", Split(*[0] * 13))


@PROPS
@given(settlements())
@example(PLAIN)
@example(EMPTY)  # every default left out but setl_time, present and empty
@example(dataclasses.replace(PLAIN, audit_flags=("", "QUOTA_REACHED"), payee_code="H44010100002"))
def test_the_bytes_are_upbs(s: Settlement) -> None:
    assert settle_result(s) == result_pb(s).SerializeToString()


@pytest.mark.parametrize("field, value", [
    ("medfee_sumamt_fen", INT64_MAX + 1), ("balc_fen", INT64_MIN - 1), ("insutype", 2**31), ("insutype", -(2**31) - 1),
])
def test_a_value_no_field_holds_is_refused_as_upb_refuses_it(field: str, value: int) -> None:
    if field == "insutype":
        s = dataclasses.replace(PLAIN, insutype=value)
    else:
        s = dataclasses.replace(PLAIN, split=dataclasses.replace(PLAIN.split, **{field: value}))
    with pytest.raises((ValueError, OverflowError)):
        result_pb(s)
    with pytest.raises(OverflowError):
        settle_result(s)


def test_a_line_split_amount_beyond_int64_is_refused() -> None:
    line = LineSplit("1", Category.A, 300, 0, 0, 0, INT64_MAX + 1)
    with pytest.raises(OverflowError):
        settle_result(dataclasses.replace(PLAIN, split=dataclasses.replace(PLAIN.split, line_splits=(line,))))


def test_a_naive_setl_time_is_refused() -> None:
    with pytest.raises(TypeError):
        settle_result(dataclasses.replace(PLAIN, setl_time=dt.datetime(2026, 12, 6)))

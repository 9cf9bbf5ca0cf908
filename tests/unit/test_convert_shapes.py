"""server/convert.py builds its messages and bills the cheap way (positional
Bill, IntEnums and a dict passed to upb, line splits added in place): the
result must equal a plain field-by-field conversion, for any input."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS,
    Bill,
    ClrType,
    FeeLine,
    LineSplit,
    PayLoc,
    Prescription,
    Settlement,
    SettlementKind,
    Split,
    VisitType,
)
from medsettle.server.convert import bill_from_pb, result_pb
from medsettle.v1 import settlement_pb2 as pb

PROPS = settings(max_examples=200, deadline=None)
int64s = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=12)

# The request fields a Bill is made of, named alike (the e-cert nonce and expiry come from the service).
BILL_FIELDS = [f.name for f in dataclasses.fields(Bill)
               if f.name not in ("fee_lines", "ecert_nonce", "ecert_expires_us", "prescription")]


@st.composite
def requests(draw: st.DrawFn) -> pb.SettleRequest:
    request = pb.SettleRequest(
        msgid=draw(texts), fixmedins_code=draw(texts), psn_no=draw(texts), insutype=draw(st.integers(0, 2**31 - 1)),
        insuplc_admdvs=draw(texts), visit_type=draw(st.integers(0, 6)), acct_used_flag=draw(st.booleans()),
        diag_code=draw(texts), prior_offline_diag_date=draw(texts), rx_id=draw(texts),
        prescribing_fixmedins_code=draw(texts), delivery_fee_fen=draw(int64s), ecert_token=draw(texts),
        pharmacist_id=draw(texts),
    )
    if draw(st.booleans()):
        request.prescription.rx_id = draw(texts)
        request.prescription.prescriber_id = draw(texts)
        request.prescription.valid_days = draw(st.integers(-(2**31), 2**31 - 1))
        for _ in range(draw(st.integers(0, 3))):
            request.prescription.items.add(hilist_code=draw(texts), cnt=draw(int64s))
    for _ in range(draw(st.integers(0, 4))):
        request.fee_lines.add(feedetl_sn=draw(texts), hilist_code=draw(texts), cnt=draw(st.integers(-(2**31), 2**31 - 1)),
                              pric_fen=draw(int64s))
    return request


@PROPS
@given(requests())
def test_bill_from_pb_equals_a_by_name_conversion(request: pb.SettleRequest) -> None:
    values = {name: getattr(request, name) for name in BILL_FIELDS}
    if request.visit_type in {int(v) for v in VisitType}:
        values["visit_type"] = VisitType(request.visit_type)
    rx = request.prescription
    prescription = Prescription(rx.rx_id, rx.prescriber_id, tuple((i.hilist_code, i.cnt) for i in rx.items),
                                rx.valid_days) if request.HasField("prescription") else None
    expected = Bill(
        **values, fee_lines=tuple(FeeLine(l.feedetl_sn, l.hilist_code, l.cnt, l.pric_fen) for l in request.fee_lines),
        prescription=prescription,
    )
    bill = bill_from_pb(request)
    assert bill == expected and type(bill.visit_type) is type(expected.visit_type)


line_splits = st.builds(LineSplit, texts, st.sampled_from(Category), int64s, int64s, int64s, int64s, int64s)


@st.composite
def settlements(draw: st.DrawFn) -> Settlement:
    split = Split(*[draw(int64s) for _ in range(len(AMOUNT_FIELDS) + 1)],
                  line_splits=tuple(draw(st.lists(line_splits, max_size=4))))
    at = draw(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                           timezones=st.sampled_from([dt.timezone.utc, CHINA_TZ])))
    return Settlement(
        draw(texts), draw(texts), draw(texts), draw(texts), draw(st.integers(0, 2**31 - 1)), draw(texts), draw(texts),
        draw(st.sampled_from(ClrType)), draw(st.sampled_from(PayLoc)), draw(st.sampled_from(SettlementKind)),
        draw(texts), at, draw(texts), split, tuple(draw(st.lists(texts, max_size=3))), draw(texts),
    )


def plain_result(s: Settlement) -> pb.SettleResult:
    """Field by field: every scalar set by name, every nested message built on its own."""
    result = pb.SettleResult()
    for name in ("setl_id", "msgid", "fixmedins_code", "psn_no", "insutype", "insuplc_admdvs", "mdtrtarea_admvs",
                 "orig_setl_id", "setlym", "payee_code"):
        setattr(result, name, getattr(s, name))
    for name in ("clr_type", "pay_loc", "kind"):
        setattr(result, name, int(getattr(s, name)))
    for name in (*AMOUNT_FIELDS, "balc_fen"):
        setattr(result, name, getattr(s.split, name))
    utc = s.setl_time.astimezone(dt.timezone.utc)
    result.setl_time.FromDatetime(utc)
    for ls in s.split.line_splits:
        line = result.line_splits.add()
        line.feedetl_sn, line.chrgitm_lv = ls.feedetl_sn, int(ls.category)  # type: ignore[assignment]
        for name in ("det_item_fee_sumamt_fen", "fulamt_ownpay_amt_fen", "overlmt_selfpay_fen",
                     "preselfpay_amt_fen", "inscp_scp_amt_fen"):
            setattr(line, name, getattr(ls, name))
    for flag in s.audit_flags:
        result.audit_flags.append(flag)
    return result


@PROPS
@given(settlements())
def test_result_pb_equals_a_field_by_field_message(s: Settlement) -> None:
    built, expected = result_pb(s), plain_result(s)
    assert built == expected
    assert built.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)

"""The national envelope <-> the service's values (pure): field names, types,
national synonyms, and refusals naming each field as gRPC names it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.errors import FieldViolation, Reason, Refused
from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS, ClrType, FeeLine, LineSplit, PayLoc, Settlement, SettlementKind, Split, VisitType,
)
from medsettle.server.gateway import envelope as env
from medsettle.server.gateway.yuan import dumps, fen_of_yuan, loads

AT = dt.datetime(2026, 10, 15, 10, 30, 5, 123_000, tzinfo=CHINA_TZ)


def envelope(infno: str = "2207", **input_: object) -> env.Envelope:
    return env.parse_envelope({"infno": infno, "msgid": "M1", "fixmedins_code": "H13010100001", "input": input_})


def violations(error: pytest.ExceptionInfo[Refused]) -> dict[str, str]:
    assert error.value.reason is Reason.FIELD_INVALID
    return {v.field: v.description for v in error.value.violations}


def test_a_national_bill_reads_as_the_grpc_bill() -> None:
    bill = env.bill_of(envelope(
        data={"psn_no": "13010000000000000001", "insutype": "310", "insuplc_admdvs": "130100",
              "visit_type": "VISIT_TYPE_OUTPATIENT", "acct_used_flag": "1", "delivery_fee": "0.50",
              "msgid": "M1", "mdtrt_id": "ignored: a national field medsettle does not use"},
        feedetail=[{"feedetl_sn": 1, "med_list_codg": "XB0202", "cnt": Decimal("1.0"), "pric": Decimal("4.52")},
                   {"feedetl_sn": "2", "hilist_code": "S0001", "cnt": "2", "pric": "25"}],
    ))
    assert (bill.msgid, bill.fixmedins_code, bill.psn_no, bill.insutype, bill.insuplc_admdvs) == \
        ("M1", "H13010100001", "13010000000000000001", 310, "130100")
    assert bill.visit_type is VisitType.OUTPATIENT and bill.acct_used_flag is True and bill.delivery_fee_fen == 50
    assert bill.fee_lines == (FeeLine("1", "XB0202", 1, 452), FeeLine("2", "S0001", 2, 2500))


def test_visit_type_as_a_number_or_a_short_name() -> None:
    assert env.bill_of(envelope(data={"visit_type": 2})).visit_type is VisitType.INPATIENT
    assert env.bill_of(envelope(data={"visit_type": "PHARMACY"})).visit_type is VisitType.PHARMACY
    assert env.bill_of(envelope(data={"visit_type": 9})).visit_type == 9  # the service refuses it, naming visit_type


def test_every_bad_field_is_named_as_grpc_names_it() -> None:
    with pytest.raises(Refused) as error:
        env.bill_of(envelope(
            data={"psn_no": 13010000000000000001, "acct_used_flag": "yes", "delivery_fee": "0.505", "msgid": "M2"},
            feedetail=[{"feedetl_sn": "1", "hilist_code": "A", "med_list_codg": "B", "cnt": 1.5, "pric": "4.521"}, "x"],
        ))
    found = violations(error)
    assert set(found) == {"psn_no", "acct_used_flag", "delivery_fee_fen", "input.data.msgid", "fee_lines[0].hilist_code",
                          "fee_lines[0].cnt", "fee_lines[0].pric_fen", "fee_lines[1]",
                          # and what the service's own checks find in the rest, all in one answer
                          "insutype", "insuplc_admdvs", "visit_type"}
    assert "two decimals" in found["fee_lines[0].pric_fen"]
    assert found["psn_no"] == "must be a string, got a number"


def test_a_line_that_is_no_object_keeps_the_others_named_by_their_own_index() -> None:
    with pytest.raises(Refused) as error:
        env.bill_of(envelope(data={"psn_no": "13010000000000000001", "insutype": 310, "insuplc_admdvs": "130100",
                                   "visit_type": 1},
                             feedetail=["x", {"feedetl_sn": "2", "hilist_code": "S0001", "cnt": 0, "pric": "1.00"}]))
    assert set(violations(error)) == {"fee_lines[0]", "fee_lines[1].cnt"}


def test_the_envelope_itself() -> None:
    with pytest.raises(Refused) as error:
        env.parse_envelope({"infno": 2207, "msgid": ["M"], "input": "x"})
    assert set(violations(error)) == {"infno", "msgid", "input"}
    with pytest.raises(Refused) as error:
        env.parse_envelope({"infno": "9999", "msgid": "M", "fixmedins_code": "H", "input": {}})
    assert "2206, 2207, 2208, 5203, 3201, 3202" in violations(error)["infno"]
    with pytest.raises(Refused) as error:
        env.parse_envelope([1, 2])
    assert set(violations(error)) == {"request"}
    with pytest.raises(Refused) as error:
        env.bill_of(envelope(data=[], feedetail={}))
    assert {"input.data", "fee_lines"} <= set(violations(error))


@pytest.mark.parametrize(("field", "where"), [
    ("msgid", "msgid"), ("infno", "infno"), ("request", "request"), ("psn_no", "input.data.psn_no"),
    ("fee_lines", "input.feedetail"), ("fee_lines[3]", "input.feedetail[3]"),
    ("fee_lines[3].pric_fen", "input.feedetail[3].pric"), ("fee_lines[0].cnt", "input.feedetail[0].cnt"),
    ("delivery_fee_fen", "input.data.delivery_fee"), ("institution_totals.setl_cnt", "input.data.fixmedins_setl_cnt"),
    ("institution_totals.acct_pay_fen", "input.data.acct_pay"), ("input.data.msgid", "input.data.msgid"),
    ("key", "input.data.key"),
])
def test_envelope_path(field: str, where: str) -> None:
    assert env.envelope_path(field) == where


def test_totals_query_takes_national_names_and_negative_sums() -> None:
    setlym, clr_type, totals = env.totals_query_of(envelope("3201", data={
        "setlym": "2026-10", "clr_type": "11", "fixmedins_setl_cnt": 3, "medfee_sumamt": "-4.52",
        "fund_pay_sumamt": 0, "acct_pay": Decimal("1.5"), "cash_payamt": "0.01"}))
    assert (setlym, clr_type) == ("2026-10", 11)
    assert (totals.setl_cnt, totals.medfee_sumamt_fen, totals.fund_pay_sumamt_fen, totals.acct_pay_fen,
            totals.psn_cash_pay_fen) == (3, -452, 0, 150, 1)
    with pytest.raises(Refused) as error:
        env.totals_query_of(envelope("3201", data={"setlym": "2026-10", "clr_type": 11, "medfee_sumamt": "1e20"}))
    assert set(violations(error)) == {"institution_totals.setl_cnt", "institution_totals.medfee_sumamt_fen",
                                      "institution_totals.fund_pay_sumamt_fen", "institution_totals.acct_pay_fen",
                                      "institution_totals.psn_cash_pay_fen"}


def test_details_query_pages_are_bounded() -> None:
    assert env.details_query_of(envelope("3202", data={"setlym": "2026-10"})) == ("2026-10", 0, 1, env.DEFAULT_PAGE_SIZE)
    with pytest.raises(Refused) as error:
        env.details_query_of(envelope("3202", data={"setlym": "2026-10", "page_num": 0, "page_size": 5000}))
    assert set(violations(error)) == {"page_num", "page_size"}
    with pytest.raises(Refused) as error:
        env.details_query_of(envelope("3202", data={"setlym": "2026-10", "page_num": 10_000, "page_size": 1000}))
    assert set(violations(error)) == {"page_num"}


def test_a_refusal_names_the_reason_and_each_field_both_ways() -> None:
    answer = env.refusal_answer("M1", "FIELD_INVALID", "invalid field(s): fee_lines[0].cnt, psn_no", [
        FieldViolation("fee_lines[0].cnt", "must be 1..100000, got 0"), FieldViolation("psn_no", "must be ...")],
        AT, max_shown=20, max_chars=400)
    assert answer["infcode"] == -1 and answer["output"] is None and answer["inf_refmsgid"] == "M1"
    assert answer["err_msg"] == ("FIELD_INVALID: fee_lines[0].cnt (input.feedetail[0].cnt): must be 1..100000, got 0; "
                                 "psn_no (input.data.psn_no): must be ...")
    assert answer["err_detail"]["field_violations"][0] == {
        "field": "fee_lines[0].cnt", "envelope_field": "input.feedetail[0].cnt", "description": "must be 1..100000, got 0"}
    assert answer["respond_time"] == "20261015103005123"
    no_fields = env.refusal_answer("M1", "ALREADY_REVERSED", "ALREADY_REVERSED: S1 was reversed", [], AT, 20, 400)
    assert no_fields["err_msg"] == "ALREADY_REVERSED: S1 was reversed"
    long = env.refusal_answer("M1", "FIELD_INVALID", "", [FieldViolation(f"f{i}", "x" * 50) for i in range(30)], AT, 20, 400)
    assert len(long["err_detail"]["field_violations"]) == 20 and len(long["err_msg"]) == 403


AMOUNT = st.integers(min_value=-10**12, max_value=10**12)


@settings(max_examples=200, deadline=None)
@given(st.lists(AMOUNT, min_size=len(AMOUNT_FIELDS) + 1, max_size=len(AMOUNT_FIELDS) + 1), st.lists(AMOUNT, min_size=5, max_size=5))
def test_a_settlement_answer_carries_every_amount_exactly(amounts: list[int], line: list[int]) -> None:
    split = Split(*amounts, line_splits=(LineSplit("1", Category.B, *line),))
    settlement = Settlement("S1", "M1", "H1", "13010000000000000001", 310, "130100", "130100", ClrType.OUTPATIENT,
                            PayLoc.LOCAL, SettlementKind.SETTLE, "", AT, "2026-10", split)
    output = loads(dumps(env.settlement_output(settlement)))
    info = output["setlinfo"]
    for name in AMOUNT_FIELDS:
        assert fen_of_yuan(info[name.removesuffix("_fen")]) == getattr(split, name)
    assert fen_of_yuan(info["balc"]) == split.balc_fen
    detail = output["setldetail"][0]
    assert [fen_of_yuan(detail[k]) for k in ("det_item_fee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay",
                                              "preselfpay_amt", "inscp_scp_amt")] == line
    assert info["setl_time"] == "2026-10-15 10:30:05" and detail["chrgitm_lv"] == int(Category.B)


def test_every_refusal_has_an_http_status_and_none_is_a_500_but_internal() -> None:
    from medsettle.server.gateway.http import HTTP_STATUS
    from medsettle.server.status import STATUS_OF_REASON

    statuses = {reason: HTTP_STATUS[STATUS_OF_REASON[reason]] for reason in Reason}
    assert {reason for reason, status in statuses.items() if status >= 500} == {
        Reason.STORAGE_UNAVAILABLE, Reason.INTERNAL}
    assert statuses[Reason.STORAGE_UNAVAILABLE] == 503 and statuses[Reason.OVERLOADED] == 429
    assert statuses[Reason.IDEMPOTENCY_CONFLICT] == 409 and statuses[Reason.FIELD_INVALID] == 400

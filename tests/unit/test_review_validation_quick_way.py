"""The quick check of a bill (validation._plainly_valid) may only say yes to
a bill the full check finds nothing wrong with: bill_violations answers
exactly what the full check (validation._violations) answers, for bills
built from the values at and around every bound and pattern edge (lengths
30/31 and 50/51, non-ASCII letters and digits that str.isalnum and
str.isdigit accept, a trailing newline, separators a pattern allows only
after the first character, zero and negative numbers, fields that only some
visit types may carry). Run compiled and interpreted (MEDSETTLE_PURE=1)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.settlement import validation
from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription, VisitType

TEXTS = ["", "A", "a1", "A" * 30, "A" * 31, "A" * 40, "A" * 41, "A" * 50, "A" * 51, "A-1", "A_1", "A.1", "-A", "_A",
         ".A", "Ａ1", "é", "١٢", "²", "ⅰ", "A\n", "A ", " A", "A\x00", "H44010100001", "S0001", "XB0201", "J45.901"]
ADMDVS = ["440100", "44010", "4401000", "４４０１００", "44010a", "44010²", "١٢٣٤٥٦", "440100\n", ""]
DATES = ["", "2026-10-01", "2026-1-01", "20261001", "2026-02-30", "２０２６-10-01"]
COUNTS = [-1, 0, 1, 2, validation.MAX_CNT, validation.MAX_CNT + 1]
PRICES = [-1, 0, 1, 2500, validation.MAX_PRIC_FEN, validation.MAX_PRIC_FEN + 1]
texts = st.sampled_from(TEXTS)

lines = st.builds(FeeLine, texts, texts, st.sampled_from(COUNTS), st.sampled_from(PRICES))
prescriptions = st.none() | st.builds(
    Prescription, texts, texts,
    st.lists(st.tuples(texts, st.sampled_from(COUNTS)), max_size=3).map(tuple),
    st.sampled_from([-1, 0, 30, validation.MAX_RX_VALID_DAYS, validation.MAX_RX_VALID_DAYS + 1]))
bills = st.builds(
    Bill,
    msgid=texts, fixmedins_code=texts, psn_no=texts,
    insutype=st.sampled_from([310, 390, 0, 311]),
    insuplc_admdvs=st.sampled_from(ADMDVS),
    visit_type=st.sampled_from(list(VisitType)),
    fee_lines=st.lists(lines, max_size=4).map(tuple) | st.lists(st.sampled_from(
        [FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 2, 3500)]), min_size=1, max_size=3).map(tuple),
    acct_used_flag=st.booleans(),
    diag_code=texts, prior_offline_diag_date=st.sampled_from(DATES), rx_id=texts,
    prescribing_fixmedins_code=texts,
    delivery_fee_fen=st.sampled_from([-1, 0, 1, validation.MAX_DELIVERY_FEE_FEN, validation.MAX_DELIVERY_FEE_FEN + 1]),
    prescription=prescriptions, pharmacist_id=texts,
)


@settings(max_examples=3000, deadline=None)
@given(bills, st.booleans())
def test_the_quick_check_answers_as_the_full_check(bill: Bill, person_from_token: bool) -> None:
    assert validation.bill_violations(bill, person_from_token) == validation._violations(bill, person_from_token)


VALID = Bill(msgid="M1", fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
             insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
             fee_lines=(FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 2, 3500)))
FIELDS = ["msgid", "fixmedins_code", "psn_no", "diag_code", "rx_id", "prescribing_fixmedins_code", "pharmacist_id"]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(FIELDS), texts, st.sampled_from(list(VisitType)), st.sampled_from(ADMDVS),
       st.sampled_from([0, 1, 2]), texts, texts, st.sampled_from(COUNTS), st.sampled_from(PRICES), st.booleans())
def test_one_edge_value_in_a_good_bill_is_answered_as_the_full_check_answers(
        name: str, value: str, visit: VisitType, admdvs: str, line_at: int, sn: str, code: str, cnt: int,
        price: int, person_from_token: bool) -> None:
    fee_lines = list(VALID.fee_lines)
    if line_at < len(fee_lines):
        fee_lines[line_at] = FeeLine(sn, code, cnt, price)
    bill = replace(VALID, visit_type=visit, insuplc_admdvs=admdvs, fee_lines=tuple(fee_lines), **{name: value})
    assert validation.bill_violations(bill, person_from_token) == validation._violations(bill, person_from_token)

"""Shape checks of a bill and of a reversal: every bound explicit, every
violation names the exact field path (google.rpc.BadRequest style)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription, VisitType
from medsettle.ledger.settlement.validation import (
    MAX_BILL_FEN,
    MAX_CNT,
    MAX_DELIVERY_FEE_FEN,
    MAX_FEE_LINES,
    MAX_PRIC_FEN,
    _plainly_valid,
    _violations,
    bill_violations,
    reversal_violations,
)

PROPS = settings(max_examples=100, deadline=None)


def lines(n: int = 3) -> tuple[FeeLine, ...]:
    return tuple(FeeLine(feedetl_sn=str(i + 1), hilist_code="XA0101", cnt=1, pric_fen=2500) for i in range(n))


VALID = Bill(
    msgid="H44010100001202610151030000001",  # 30 chars: institution code + timestamp + sequence
    fixmedins_code="H44010100001",
    psn_no="44010000000000000001",
    insutype=310,
    insuplc_admdvs="440100",
    visit_type=VisitType.OUTPATIENT,
    fee_lines=lines(),
    acct_used_flag=True,
    diag_code="E11.9",
    prior_offline_diag_date="2026-09-01",
    rx_id="RX-2026-0001",
    prescribing_fixmedins_code="H44010100001",
    delivery_fee_fen=800,
)


def fields_of(bill: Bill, **kwargs: object) -> list[str]:
    return [v.field for v in bill_violations(bill, **kwargs)]


def with_line(index: int, **changes: object) -> Bill:
    fee_lines = list(VALID.fee_lines)
    fee_lines[index] = replace(fee_lines[index], **changes)
    return replace(VALID, fee_lines=tuple(fee_lines))


def test_a_valid_bill_has_no_violations() -> None:
    assert len(VALID.msgid) == 30
    assert bill_violations(VALID) == []


def test_optional_fields_may_be_empty() -> None:
    bare = replace(VALID, diag_code="", prior_offline_diag_date="", rx_id="", prescribing_fixmedins_code="", delivery_fee_fen=0)
    assert bill_violations(bare) == []


def test_an_internet_followup_needs_its_diagnosis_and_prior_offline_diagnosis_date() -> None:
    bare = replace(VALID, visit_type=VisitType.INTERNET_FOLLOWUP, diag_code="", prior_offline_diag_date="")
    assert [v.field for v in bill_violations(bare)] == ["diag_code", "prior_offline_diag_date"]


def test_a_prescription_id_and_its_prescriber_come_together() -> None:
    no_prescriber = replace(VALID, visit_type=VisitType.PHARMACY, prescribing_fixmedins_code="")
    assert [v.field for v in bill_violations(no_prescriber)] == ["prescribing_fixmedins_code"]
    no_rx = replace(VALID, rx_id="")
    assert [v.field for v in bill_violations(no_rx)] == ["rx_id"]


@pytest.mark.parametrize("visit", list(VisitType))
@pytest.mark.parametrize("insutype", [310, 390])
def test_every_visit_type_and_insurance_type_is_accepted(visit: VisitType, insutype: int) -> None:
    assert bill_violations(replace(VALID, visit_type=visit, insutype=insutype)) == []


def test_bounds_are_inclusive() -> None:
    at_bounds = replace(
        VALID,
        fee_lines=(
            FeeLine("1", "XA0101", MAX_CNT, 1),
            FeeLine("2", "XA0101", 1, MAX_PRIC_FEN),
            FeeLine("3", "a" * 50, 1, 1),  # the longest catalogue code
            FeeLine("x" * 30, "XA0101", 1, 1),  # the longest line number
        ),
        delivery_fee_fen=MAX_DELIVERY_FEE_FEN,
        diag_code="A" * 20,
        rx_id="R" * 40,
        msgid="M" * 30,
        fixmedins_code="H" * 30,
        psn_no="9" * 30,
    )
    assert bill_violations(at_bounds) == []


BAD_FIELDS = [
    # (field path, changes to the valid bill)
    ("msgid", {"msgid": ""}),
    ("msgid", {"msgid": "M" * 31}),
    ("msgid", {"msgid": "H4401 0100001"}),
    ("msgid", {"msgid": "H44010100001;DROP"}),
    ("msgid", {"msgid": "H44010100001\n"}),  # a trailing newline is not part of an id
    ("fixmedins_code", {"fixmedins_code": ""}),
    ("fixmedins_code", {"fixmedins_code": "H" * 31}),
    ("fixmedins_code", {"fixmedins_code": "-H4401"}),  # must start with a letter or digit
    ("fixmedins_code", {"fixmedins_code": "H4401/01"}),
    ("fixmedins_code", {"fixmedins_code": "H44010100001\n"}),
    ("psn_no", {"psn_no": ""}),
    ("psn_no", {"psn_no": "4" * 31}),
    ("psn_no", {"psn_no": "4401-0000"}),
    ("psn_no", {"psn_no": "陈晓明"}),  # a name is not a person number
    ("psn_no", {"psn_no": "44010000000000000001\n"}),
    ("insutype", {"insutype": 320}),
    ("insutype", {"insutype": 0}),
    ("insuplc_admdvs", {"insuplc_admdvs": "44010"}),
    ("insuplc_admdvs", {"insuplc_admdvs": "4401000"}),
    ("insuplc_admdvs", {"insuplc_admdvs": "44010a"}),
    ("insuplc_admdvs", {"insuplc_admdvs": "440100\n"}),
    ("insuplc_admdvs", {"insuplc_admdvs": "４４０１００"}),  # full-width digits are not a region code
    ("visit_type", {"visit_type": 9}),
    ("delivery_fee_fen", {"delivery_fee_fen": -1}),
    ("delivery_fee_fen", {"delivery_fee_fen": MAX_DELIVERY_FEE_FEN + 1}),
    ("diag_code", {"diag_code": "E" * 21}),
    ("diag_code", {"diag_code": "E11 9"}),
    ("prior_offline_diag_date", {"prior_offline_diag_date": "2026-13-01"}),
    ("prior_offline_diag_date", {"prior_offline_diag_date": "2026-02-30"}),
    ("prior_offline_diag_date", {"prior_offline_diag_date": "20260901"}),
    ("prior_offline_diag_date", {"prior_offline_diag_date": "2026-09-01T10:00"}),
    ("prior_offline_diag_date", {"prior_offline_diag_date": "yesterday"}),
    ("rx_id", {"rx_id": "R" * 41}),
    ("rx_id", {"rx_id": "RX 1"}),
    ("prescribing_fixmedins_code", {"prescribing_fixmedins_code": "_H1"}),
    ("prescribing_fixmedins_code", {"prescribing_fixmedins_code": "H" * 31}),
]


@pytest.mark.parametrize(("path", "changes"), BAD_FIELDS, ids=[f"{p}:{c!r}"[:60] for p, c in BAD_FIELDS])
def test_each_bad_field_is_named(path: str, changes: dict[str, object]) -> None:
    violations = bill_violations(replace(VALID, **changes))
    assert [v.field for v in violations] == [path]
    assert violations[0].description  # says what is expected


BAD_LINES = [
    ("cnt", {"cnt": 0}),
    ("cnt", {"cnt": -3}),
    ("cnt", {"cnt": MAX_CNT + 1}),
    ("pric_fen", {"pric_fen": 0}),
    ("pric_fen", {"pric_fen": -1}),
    ("pric_fen", {"pric_fen": MAX_PRIC_FEN + 1}),
    ("hilist_code", {"hilist_code": ""}),
    ("hilist_code", {"hilist_code": "X" * 51}),
    ("hilist_code", {"hilist_code": ".XA0101"}),
    ("hilist_code", {"hilist_code": "XA 0101"}),
    ("hilist_code", {"hilist_code": "XA0101\n"}),
    ("feedetl_sn", {"feedetl_sn": ""}),
    ("feedetl_sn", {"feedetl_sn": "9" * 31}),
    ("feedetl_sn", {"feedetl_sn": "2.1"}),
    ("feedetl_sn", {"feedetl_sn": "7\n"}),
]


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize(("name", "changes"), BAD_LINES, ids=[f"{n}:{c!r}"[:40] for n, c in BAD_LINES])
def test_each_bad_line_field_is_named_with_its_index(index: int, name: str, changes: dict[str, object]) -> None:
    violations = bill_violations(with_line(index, **changes))
    assert [v.field for v in violations] == [f"fee_lines[{index}].{name}"]


def test_every_violation_is_listed_not_only_the_first() -> None:
    bill = replace(
        with_line(1, cnt=0, pric_fen=0),
        msgid="",
        insutype=1,
        insuplc_admdvs="x",
        delivery_fee_fen=-5,
    )
    assert sorted(fields_of(bill)) == sorted(
        ["msgid", "insutype", "insuplc_admdvs", "fee_lines[1].cnt", "fee_lines[1].pric_fen", "delivery_fee_fen"]
    )


def test_duplicate_line_number_is_flagged_on_the_repeat() -> None:
    fee_lines = (FeeLine("1", "XA0101", 1, 100), FeeLine("2", "XA0101", 1, 100), FeeLine("1", "XA0102", 1, 100))
    violations = bill_violations(replace(VALID, fee_lines=fee_lines))
    assert [v.field for v in violations] == ["fee_lines[2].feedetl_sn"]
    assert "'1'" in violations[0].description


def test_line_count_bounds() -> None:
    assert bill_violations(replace(VALID, fee_lines=lines(MAX_FEE_LINES))) == []
    assert MAX_FEE_LINES == 500
    too_many = bill_violations(replace(VALID, fee_lines=lines(MAX_FEE_LINES + 1)))
    assert [v.field for v in too_many] == ["fee_lines"]
    assert "501" in too_many[0].description
    none = bill_violations(replace(VALID, fee_lines=()))
    assert [v.field for v in none] == ["fee_lines"]


def test_bill_total_bound() -> None:
    # one line of 1000 x the largest unit price is exactly the largest bill
    largest = FeeLine("1", "XA0101", MAX_BILL_FEN // MAX_PRIC_FEN, MAX_PRIC_FEN)
    assert largest.cnt * largest.pric_fen == MAX_BILL_FEN
    assert fields_of(replace(VALID, fee_lines=(largest,), delivery_fee_fen=0)) == []
    # one fen more, on another line, and the bill is too big (each line within its own bounds)
    assert fields_of(replace(VALID, fee_lines=(largest, FeeLine("2", "XA0101", 1, 1)), delivery_fee_fen=0)) == ["fee_lines"]
    # the delivery fee counts towards the total
    assert fields_of(replace(VALID, fee_lines=(largest,), delivery_fee_fen=1)) == ["fee_lines"]
    # a single line within its cnt and price bounds can still be too big
    assert fields_of(replace(VALID, fee_lines=(FeeLine("1", "XA0101", MAX_CNT, MAX_PRIC_FEN),))) == ["fee_lines"]


def test_person_from_token_skips_the_person_number() -> None:
    bill = replace(VALID, psn_no="")
    assert fields_of(bill) == ["psn_no"]
    assert fields_of(bill, person_from_token=True) == []


def test_long_values_are_shortened_in_the_description() -> None:
    (violation,) = bill_violations(replace(VALID, msgid="M" * 10_000))
    assert violation.field == "msgid"
    assert len(violation.description) < 200


# ---- any well-formed bill ------------------------------------------------

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ids = st.text(alphabet=ALNUM + "_-", min_size=1, max_size=30)
codes = st.builds(str.__add__, st.sampled_from(ALNUM), st.text(alphabet=ALNUM + "._-", max_size=29))


@st.composite
def valid_bills(draw: st.DrawFn) -> Bill:
    count = draw(st.integers(1, 20))
    sns = draw(st.lists(ids, min_size=count, max_size=count, unique=True))
    # 20 lines x 1000 x 10^6 fen stays under the bill total bound
    fee_lines = tuple(
        FeeLine(sn, draw(codes), draw(st.integers(1, 1000)), draw(st.integers(1, MAX_PRIC_FEN // 100)))
        for sn in sns
    )
    visit_type = draw(st.sampled_from(VisitType))
    # an internet follow-up is well-formed only with its diagnosis and prior offline diagnosis date
    followup = visit_type == VisitType.INTERNET_FOLLOWUP
    dates = st.dates().map(lambda d: d.isoformat()).filter(lambda s: len(s) == 10)
    return Bill(
        msgid=draw(ids),
        fixmedins_code=draw(codes),
        psn_no=draw(st.text(alphabet=ALNUM, min_size=1, max_size=30)),
        insutype=draw(st.sampled_from([310, 390])),
        insuplc_admdvs=draw(st.text(alphabet="0123456789", min_size=6, max_size=6)),
        visit_type=visit_type,
        fee_lines=fee_lines,
        acct_used_flag=draw(st.booleans()),
        delivery_fee_fen=draw(st.integers(0, MAX_DELIVERY_FEE_FEN)),
        diag_code="E11.9" if followup else "",
        prior_offline_diag_date=draw(dates if followup else st.one_of(st.just(""), dates)),
    )


@PROPS
@given(valid_bills(), st.data())
def test_any_well_formed_bill_passes_and_one_bad_line_is_pinpointed(bill: Bill, data) -> None:
    assert sum(line.cnt * line.pric_fen for line in bill.fee_lines) + bill.delivery_fee_fen <= MAX_BILL_FEN
    assert bill_violations(bill) == []
    index = data.draw(st.integers(0, len(bill.fee_lines) - 1))
    field, bad = data.draw(st.one_of(
        st.tuples(st.just("cnt"), st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_CNT + 1))),
        st.tuples(st.just("pric_fen"), st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_PRIC_FEN + 1))),
    ))
    fee_lines = list(bill.fee_lines)
    fee_lines[index] = replace(fee_lines[index], **{field: bad})
    found = fields_of(replace(bill, fee_lines=tuple(fee_lines)))
    assert f"fee_lines[{index}].{field}" in found
    # the only other complaint possible is the bill total, when the bad value is huge
    assert set(found) <= {f"fee_lines[{index}].{field}", "fee_lines"}


# ---- the quick check -----------------------------------------------------

# Values at and beyond every bound and pattern: letters and digits (the
# quick check's own test), the other characters a pattern allows, and what
# none allows (full-width digits, a trailing newline, a space, non-ASCII).
near_texts = st.one_of(
    st.text(alphabet=ALNUM, max_size=52),
    st.text(alphabet=ALNUM + "._- \n", max_size=52),
    st.sampled_from(["", "\uff11\uff12\uff13\uff14\uff15\uff16", "440100\n", "E11.9", "2026-09-01", "RX-1", "é", "A" * 30,
                     "A" * 31, "A" * 50, "A" * 51, "_A", "-", ".", "a.b"]),
)
near_ints = st.one_of(st.integers(-2, 3), st.sampled_from([MAX_CNT, MAX_CNT + 1, MAX_PRIC_FEN, MAX_PRIC_FEN + 1,
                                                           MAX_DELIVERY_FEE_FEN, MAX_DELIVERY_FEE_FEN + 1, 310, 390, 999]))


@st.composite
def near_bills(draw: st.DrawFn) -> Bill:
    """Mostly well-formed bills with any field possibly off by a little."""
    good = draw(valid_bills())
    changes = {}
    for name in ("msgid", "fixmedins_code", "psn_no", "insuplc_admdvs", "diag_code", "prior_offline_diag_date",
                 "rx_id", "prescribing_fixmedins_code", "pharmacist_id"):
        if draw(st.integers(0, 4)) == 0:
            changes[name] = draw(near_texts)
    for name in ("insutype", "delivery_fee_fen"):
        if draw(st.integers(0, 4)) == 0:
            changes[name] = draw(near_ints)
    if draw(st.integers(0, 6)) == 0:
        changes["visit_type"] = draw(st.one_of(st.sampled_from(VisitType), st.integers(0, 6)))
    if draw(st.integers(0, 6)) == 0:
        changes["prescription"] = Prescription(draw(near_texts), draw(near_texts), ((draw(near_texts), draw(near_ints)),))
    fee_lines = list(good.fee_lines)
    if draw(st.booleans()):
        i = draw(st.integers(0, len(fee_lines) - 1))
        fee_lines[i] = FeeLine(draw(st.one_of(st.just(fee_lines[i].feedetl_sn), near_texts,
                                              st.just(fee_lines[0].feedetl_sn))),
                               draw(st.one_of(st.just(fee_lines[i].hilist_code), near_texts)),
                               draw(st.one_of(st.just(fee_lines[i].cnt), near_ints)),
                               draw(st.one_of(st.just(fee_lines[i].pric_fen), near_ints)))
    if draw(st.integers(0, 10)) == 0:
        fee_lines = draw(st.sampled_from([[], fee_lines * 2, [FeeLine("1", "XA0101", MAX_CNT, MAX_PRIC_FEN)]]))
    return replace(good, fee_lines=tuple(fee_lines), **changes)


@settings(max_examples=600, deadline=None)
@given(near_bills(), st.booleans())
def test_the_quick_check_passes_only_bills_the_full_check_finds_nothing_wrong_with(bill: Bill, from_token: bool) -> None:
    """bill_violations answers [] from its quick check without the full one:
    that must never let through a bill the full check would refuse."""
    full = _violations(bill, from_token)
    if _plainly_valid(bill, from_token):
        assert full == []
    assert bill_violations(bill, person_from_token=from_token) == full


def test_the_quick_check_takes_the_common_bills() -> None:
    """The loaded path: an outpatient, inpatient or pharmacy bill without the rare parts is checked the quick way."""
    common = replace(VALID, prior_offline_diag_date="", rx_id="", prescribing_fixmedins_code="")
    assert _plainly_valid(common, False)
    assert _plainly_valid(replace(common, visit_type=VisitType.PHARMACY, rx_id="RX-1", prescribing_fixmedins_code="H1"), False)
    assert _plainly_valid(replace(common, psn_no=""), True)
    assert not _plainly_valid(replace(common, psn_no=""), False)


# ---- reversal ------------------------------------------------------------


def test_a_valid_reversal_has_no_violations() -> None:
    assert reversal_violations("H44010100001202610161200000001", "H44010100001", "S" + "0" * 39) == []


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("", "H44010100001", "S1"), "msgid"),
        (("M" * 31, "H44010100001", "S1"), "msgid"),
        (("M1", "", "S1"), "fixmedins_code"),
        (("M1", "H 1", "S1"), "fixmedins_code"),
        (("M1", "H1", ""), "setl_id"),
        (("M1", "H1", "S" * 41), "setl_id"),
        (("M1", "H1", "S1;--"), "setl_id"),
        (("M1", "H1", "S1\n"), "setl_id"),
    ],
)
def test_each_bad_reversal_field_is_named(args: tuple[str, str, str], path: str) -> None:
    assert [v.field for v in reversal_violations(*args)] == [path]

"""The real bills of DOMAIN.md ("How one bill is split"), and the small
facts of the settlement model (pay_loc, clr_type)."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.reference.models import CatalogueItem, Category, VisitKind
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS,
    CLR_TYPE_OF_VISIT,
    Accumulators,
    ClrType,
    FeeLine,
    LineSplit,
    PayLoc,
    Split,
    VisitType,
    pay_loc_of,
)
from medsettle.ledger.settlement.split import SplitTerms, accumulate, split_bill, split_lines

HEBEI_PROVINCE = "13"
HEBEI_REGION = "130100"  # Shijiazhuang
HEBEI_HOSPITAL = "H13010100001"
HEBEI_PERSON = "13010000000000000001"


def split_line(line: FeeLine, item: CatalogueItem) -> LineSplit:
    (line_split,), *totals = split_lines([(line, item)])
    # a bill of one line: its sums are the line's own parts
    assert totals == [line_split.fulamt_ownpay_amt_fen, line_split.overlmt_selfpay_fen,
                      line_split.preselfpay_amt_fen, line_split.inscp_scp_amt_fen]
    return line_split


@pytest.fixture(scope="module")
def sample():
    return parse_document(sample_document())


# ---- the worked Hebei example --------------------------------------------


def test_hebei_worked_example(sample) -> None:
    """One class B drug line of 4.52 yuan, selfpay 5 %, unmet deductible,
    paid from the personal account: 1378.15 -> 1373.63 (DOMAIN.md)."""
    data, persons = sample
    item = data.item(HEBEI_PROVINCE, "XB0202")
    assert item is not None
    assert item.category == Category.B and item.selfpay_prop_bp == 500

    person = next(p for p in persons if p.psn_no == HEBEI_PERSON)
    assert person.acct_balc_fen == 137815  # 1378.15 yuan, as in the published test
    policy = data.policy(person.insuplc_admdvs, person.insutype)
    hospital = data.institutions[HEBEI_HOSPITAL]
    ratio_bp = policy.ratio_bp(VisitKind.OUTPATIENT, hospital.level)
    assert ratio_bp is not None and ratio_bp > 0  # the fund pays 0 only because of the deductible
    assert policy.deductible_fen > 429  # the whole eligible amount falls under the deductible
    terms = SplitTerms(policy.deductible_fen, policy.annual_fund_cap_fen, ratio_bp, policy.acct_allowed)
    before = Accumulators(dedc_used_fen=0, fund_paid_fen=0, acct_balc_fen=person.acct_balc_fen)

    line = FeeLine(feedetl_sn="1", hilist_code="XB0202", cnt=1, pric_fen=452)
    split = split_bill([(line, item)], terms, before, acct_used_flag=True)

    assert split.medfee_sumamt_fen == 452
    assert split.fulamt_ownpay_amt_fen == 0
    assert split.overlmt_selfpay_fen == 0
    assert split.preselfpay_amt_fen == 23  # 0.226 yuan rounded half-up
    assert split.inscp_scp_amt_fen == 429
    assert split.act_pay_dedc_fen == 429  # all absorbed by the unmet deductible
    assert split.hifp_pay_fen == 0
    assert split.fund_pay_sumamt_fen == 0
    assert split.psn_part_amt_fen == 452
    assert split.hosp_part_amt_fen == 0
    assert split.acct_pay_fen == 452
    assert split.psn_cash_pay_fen == 0
    assert split.balc_fen == 137363  # 1373.63 yuan
    assert split.identity_errors() == []

    assert len(split.line_splits) == 1
    (line_split,) = split.line_splits
    assert (line_split.feedetl_sn, line_split.category) == ("1", Category.B)
    assert line_split.det_item_fee_sumamt_fen == 452
    assert line_split.preselfpay_amt_fen == 23
    assert line_split.inscp_scp_amt_fen == 429

    after = accumulate(before, split)
    assert after == Accumulators(dedc_used_fen=429, fund_paid_fen=0, acct_balc_fen=137363)
    assert before.acct_balc_fen == 137815  # the input is not mutated


def test_hebei_example_without_the_account_is_all_cash(sample) -> None:
    data, _ = sample
    item = data.item(HEBEI_PROVINCE, "XB0202")
    policy = data.policy(HEBEI_REGION, 310)
    terms = SplitTerms(policy.deductible_fen, policy.annual_fund_cap_fen, 7000, policy.acct_allowed)
    split = split_bill([(FeeLine("1", "XB0202", 1, 452), item)], terms, Accumulators(0, 0, 137815), False)
    assert (split.acct_pay_fen, split.psn_cash_pay_fen, split.balc_fen) == (0, 452, 137815)


def test_treatment_province_catalogue_overrides_the_national_one(sample) -> None:
    """Treatment place's catalogue: Hebei lists XB0201 with its own selfpay and cap."""
    data, _ = sample
    national = data.item("44", "XB0201")
    hebei = data.item(HEBEI_PROVINCE, "XB0201")
    assert national is not None and hebei is not None
    assert (national.selfpay_prop_bp, national.price_cap_fen) == (500, 4000)
    assert (hebei.selfpay_prop_bp, hebei.price_cap_fen) == (1000, 3800)
    line = FeeLine("1", "XB0201", 2, 3900)  # 39.00 yuan each: above Hebei's cap, under the national one
    in_hebei = split_line(line, hebei)
    in_guangdong = split_line(line, national)
    assert in_hebei.overlmt_selfpay_fen == 2 * (3900 - 3800)
    assert in_hebei.preselfpay_amt_fen == 760  # 10 % of 2 x 38.00
    assert in_hebei.inscp_scp_amt_fen == 7600 - 760
    assert in_guangdong.overlmt_selfpay_fen == 0
    assert in_guangdong.preselfpay_amt_fen == 390  # 5 % of 78.00
    assert in_guangdong.inscp_scp_amt_fen == 7800 - 390


# ---- one line by category -------------------------------------------------


def test_class_a_line_is_fully_eligible_up_to_the_cap() -> None:
    item = CatalogueItem("XA", "a", Category.A, price_cap_fen=2500)
    under = split_line(FeeLine("1", "XA", 3, 2000), item)
    assert (under.fulamt_ownpay_amt_fen, under.overlmt_selfpay_fen, under.preselfpay_amt_fen) == (0, 0, 0)
    assert under.inscp_scp_amt_fen == under.det_item_fee_sumamt_fen == 6000
    over = split_line(FeeLine("1", "XA", 3, 2600), item)
    assert over.det_item_fee_sumamt_fen == 7800
    assert over.overlmt_selfpay_fen == 300  # 3 x 1.00 yuan above the cap
    assert over.inscp_scp_amt_fen == 7500


def test_class_c_line_is_all_self_paid_even_above_a_cap() -> None:
    item = CatalogueItem("XC", "c", Category.C, price_cap_fen=100)
    line = split_line(FeeLine("7", "XC", 4, 1234), item)
    assert line.fulamt_ownpay_amt_fen == line.det_item_fee_sumamt_fen == 4936
    assert (line.overlmt_selfpay_fen, line.preselfpay_amt_fen, line.inscp_scp_amt_fen) == (0, 0, 0)


def test_delivery_fee_is_never_covered() -> None:
    item = CatalogueItem("XA", "a", Category.A)
    terms = SplitTerms(deductible_fen=0, annual_fund_cap_fen=10**9, ratio_bp=10_000)
    split = split_bill([(FeeLine("1", "XA", 1, 1000), item)], terms, Accumulators(0, 0, 0), False, delivery_fee_fen=800)
    assert split.medfee_sumamt_fen == 1800
    assert split.fulamt_ownpay_amt_fen == 800
    assert split.hifp_pay_fen == 1000  # 100 % of the drug, nothing of the delivery
    assert split.psn_cash_pay_fen == 800


def test_annual_cap_limits_the_fund_and_the_rest_is_the_persons() -> None:
    item = CatalogueItem("XA", "a", Category.A)
    terms = SplitTerms(deductible_fen=0, annual_fund_cap_fen=100_000, ratio_bp=9_000)
    before = Accumulators(dedc_used_fen=0, fund_paid_fen=99_000, acct_balc_fen=0)
    split = split_bill([(FeeLine("1", "XA", 1, 10_000), item)], terms, before, False)
    assert split.hifp_pay_fen == 1_000  # 90 % would be 9000; only 1000 is left under the cap
    assert split.psn_part_amt_fen == 9_000
    assert accumulate(before, split).fund_paid_fen == 100_000


def test_deductible_partly_met() -> None:
    item = CatalogueItem("XA", "a", Category.A)
    terms = SplitTerms(deductible_fen=50_000, annual_fund_cap_fen=10**9, ratio_bp=8_000)
    before = Accumulators(dedc_used_fen=45_000, fund_paid_fen=0, acct_balc_fen=0)
    split = split_bill([(FeeLine("1", "XA", 1, 20_001), item)], terms, before, False)
    assert split.act_pay_dedc_fen == 5_000
    assert split.hifp_pay_fen == 12_001  # 80 % of 15001 = 12000.8 -> 12001
    assert split.psn_part_amt_fen == 20_001 - 12_001


def test_account_not_allowed_by_policy_pays_nothing() -> None:
    item = CatalogueItem("XA", "a", Category.A)
    terms = SplitTerms(deductible_fen=0, annual_fund_cap_fen=10**9, ratio_bp=5_000, acct_allowed=False)
    split = split_bill([(FeeLine("1", "XA", 1, 1000), item)], terms, Accumulators(0, 0, 10**6), True)
    assert (split.acct_pay_fen, split.psn_cash_pay_fen, split.balc_fen) == (0, 500, 10**6)


# ---- the Chongqing inpatient bill ----------------------------------------

# DOMAIN.md: total 23442.46 = 2533.97 + 1396.89 + 703.44 + 18808.16;
# fund 18785.39, person 4152.06, hospital 505.01. The article does not say how
# the person paid, so part of it is put on the account here.
CHONGQING = Split(
    medfee_sumamt_fen=2344246,
    fulamt_ownpay_amt_fen=253397,
    overlmt_selfpay_fen=139689,
    preselfpay_amt_fen=70344,
    inscp_scp_amt_fen=1880816,
    act_pay_dedc_fen=0,
    hifp_pay_fen=1878539,
    fund_pay_sumamt_fen=1878539,
    psn_part_amt_fen=415206,
    hosp_part_amt_fen=50501,
    acct_pay_fen=100000,
    psn_cash_pay_fen=315206,
    balc_fen=0,
)

PARTS = "medfee_sumamt != fulamt_ownpay + overlmt_selfpay + preselfpay + inscp_scp"
PAYERS = "medfee_sumamt != fund_pay_sumamt + psn_part + hosp_part"
PERSON = "psn_part != acct_pay + psn_cash_pay"


def test_chongqing_inpatient_bill_satisfies_the_identities() -> None:
    assert CHONGQING.identity_errors() == []
    assert CHONGQING.negated(balc_fen=100000).identity_errors() == []


@pytest.mark.parametrize(
    ("field", "broken"),
    [
        ("medfee_sumamt_fen", {PARTS, PAYERS}),
        ("fulamt_ownpay_amt_fen", {PARTS}),
        ("overlmt_selfpay_fen", {PARTS}),
        ("preselfpay_amt_fen", {PARTS}),
        ("inscp_scp_amt_fen", {PARTS}),
        ("fund_pay_sumamt_fen", {PAYERS}),
        ("hosp_part_amt_fen", {PAYERS}),
        ("psn_part_amt_fen", {PAYERS, PERSON}),
        ("acct_pay_fen", {PERSON}),
        ("psn_cash_pay_fen", {PERSON}),
    ],
)
@pytest.mark.parametrize("delta", [1, -1])
def test_a_perturbed_chongqing_bill_is_caught(field: str, broken: set[str], delta: int) -> None:
    perturbed = replace(CHONGQING, **{field: getattr(CHONGQING, field) + delta})
    assert set(perturbed.identity_errors()) == broken


def test_split_negated_is_field_by_field() -> None:
    reversal = CHONGQING.negated(balc_fen=123)
    for name in AMOUNT_FIELDS:
        assert getattr(reversal, name) == -getattr(CHONGQING, name), name
    assert reversal.balc_fen == 123
    # every amount of a Split is an AMOUNT_FIELD, except the balance after
    names = {f.name for f in fields(Split)} - {"balc_fen", "line_splits"}
    assert names == set(AMOUNT_FIELDS)


# ---- pay_loc and clr_type ------------------------------------------------


@pytest.mark.parametrize(
    ("insuplc", "mdtrtarea", "expected"),
    [
        ("440100", "440100", PayLoc.LOCAL),
        ("440100", "440300", PayLoc.IN_PROVINCE),  # same province 44
        ("130100", "130200", PayLoc.IN_PROVINCE),
        ("130100", "440100", PayLoc.CROSS_PROVINCE),
        ("310100", "130100", PayLoc.CROSS_PROVINCE),
    ],
)
def test_pay_loc_follows_the_first_two_digits(insuplc: str, mdtrtarea: str, expected: PayLoc) -> None:
    assert pay_loc_of(insuplc, mdtrtarea) == expected


def test_pay_loc_codes_are_the_national_ones() -> None:
    assert (PayLoc.IN_PROVINCE.value, PayLoc.CROSS_PROVINCE.value) == (3, 4)


def test_clr_type_of_each_visit() -> None:
    assert CLR_TYPE_OF_VISIT[VisitType.OUTPATIENT] == ClrType.OUTPATIENT == 11
    assert CLR_TYPE_OF_VISIT[VisitType.INPATIENT] == ClrType.INPATIENT == 21
    assert CLR_TYPE_OF_VISIT[VisitType.PHARMACY] == ClrType.PHARMACY == 41
    # an internet follow-up is priced and cleared as a general outpatient visit
    assert CLR_TYPE_OF_VISIT[VisitType.INTERNET_FOLLOWUP] == ClrType.OUTPATIENT
    assert set(CLR_TYPE_OF_VISIT) == set(VisitType)

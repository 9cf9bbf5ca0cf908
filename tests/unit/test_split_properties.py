"""Properties of the split for any bill, any policy terms and any person's
year-to-date state (DOMAIN.md "How one bill is split").

The expected split is computed here from the rules in DOMAIN.md with exact
rational arithmetic (fractions.Fraction), independently of ledger.money.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.reference.models import CatalogueItem, Category
from medsettle.ledger.settlement.model import AMOUNT_FIELDS, Accumulators, FeeLine, Split
from medsettle.ledger.settlement.split import SplitTerms, accumulate, split_bill

PROPS = settings(max_examples=250, deadline=None)
MAX_PRICE_FEN = 10**7


def half_up(value: Fraction) -> int:
    assert value >= 0
    return math.floor(value + Fraction(1, 2))


# ---- strategies ----------------------------------------------------------


@st.composite
def catalogue_items(draw: st.DrawFn) -> CatalogueItem:
    category = draw(st.sampled_from(Category))
    selfpay_bp = 0
    if category == Category.B:
        selfpay_bp = draw(st.one_of(st.sampled_from([0, 500, 1000, 2000, 10_000]), st.integers(0, 10_000)))
    cap = draw(st.one_of(st.none(), st.integers(1, MAX_PRICE_FEN)))
    return CatalogueItem("X", "item", category, selfpay_prop_bp=selfpay_bp, price_cap_fen=cap)


@st.composite
def priced_bills(draw: st.DrawFn, max_lines: int = 50) -> list[tuple[FeeLine, CatalogueItem]]:
    count = draw(st.integers(1, max_lines))
    priced = []
    for i in range(count):
        item = draw(catalogue_items())
        cnt = draw(st.integers(1, 1000))
        # prices around the cap are where the over-cap rule bites
        near_cap = [] if item.price_cap_fen is None else [
            st.integers(max(1, item.price_cap_fen - 2), min(MAX_PRICE_FEN, item.price_cap_fen + 2))
        ]
        price = draw(st.one_of(st.integers(1, MAX_PRICE_FEN), *near_cap))
        priced.append((FeeLine(f"{i + 1}", item.code, cnt, price), item))
    return priced


terms_strategy = st.builds(
    SplitTerms,
    deductible_fen=st.one_of(st.just(0), st.integers(0, 200_000), st.integers(0, 10**9)),
    annual_fund_cap_fen=st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 10**12)),
    ratio_bp=st.one_of(st.sampled_from([0, 5_000, 7_000, 9_500, 10_000]), st.integers(0, 10_000)),
    acct_allowed=st.booleans(),
)


@st.composite
def accumulators_for(draw: st.DrawFn, terms: SplitTerms) -> Accumulators:
    """Year-to-date state: untouched, partly used, exactly exhausted, or beyond."""
    dedc_used = draw(st.one_of(
        st.just(0),
        st.just(terms.deductible_fen),  # deductible met exactly
        st.integers(0, terms.deductible_fen),
        st.integers(0, terms.deductible_fen + 10**6),
    ))
    fund_paid = draw(st.one_of(
        st.just(0),
        st.just(terms.annual_fund_cap_fen),  # cap exhausted exactly
        st.integers(0, terms.annual_fund_cap_fen),
        st.integers(0, terms.annual_fund_cap_fen + 10**6),  # beyond (e.g. the cap was lowered)
    ))
    balance = draw(st.one_of(st.just(0), st.integers(0, 10_000), st.integers(0, 10**12)))
    return Accumulators(dedc_used, fund_paid, balance)


@dataclass(frozen=True)
class Case:
    priced: list[tuple[FeeLine, CatalogueItem]]
    terms: SplitTerms
    before: Accumulators
    acct_used_flag: bool
    delivery_fee_fen: int


@st.composite
def cases(draw: st.DrawFn, max_lines: int = 50) -> Case:
    terms = draw(terms_strategy)
    return Case(
        priced=draw(priced_bills(max_lines)),
        terms=terms,
        before=draw(accumulators_for(terms)),
        acct_used_flag=draw(st.booleans()),
        delivery_fee_fen=draw(st.one_of(st.just(0), st.integers(0, 1_000_000))),
    )


def run(case: Case) -> Split:
    return split_bill(case.priced, case.terms, case.before.copy(), case.acct_used_flag, case.delivery_fee_fen)


# ---- the rules, stated independently -------------------------------------


def expected_amounts(case: Case) -> dict[str, int]:
    """The split as DOMAIN.md describes it, in exact arithmetic."""
    fulamt = overlmt = preselfpay = inscp = 0
    for line, item in case.priced:
        amount = line.cnt * line.pric_fen
        if item.category == Category.C:
            fulamt += amount  # 丙类: all self-paid
            continue
        unit = line.pric_fen if item.price_cap_fen is None else min(line.pric_fen, item.price_cap_fen)
        allowed = line.cnt * unit
        overlmt += amount - allowed  # the excess above the catalogue cap
        first = half_up(Fraction(allowed * item.selfpay_prop_bp, 10_000)) if item.category == Category.B else 0
        preselfpay += first  # 乙类: first self-pay
        inscp += allowed - first
    fulamt += case.delivery_fee_fen  # never covered
    medfee = fulamt + overlmt + preselfpay + inscp

    terms, before = case.terms, case.before
    dedc = min(inscp, max(0, terms.deductible_fen - before.dedc_used_fen))
    fund = half_up(Fraction((inscp - dedc) * terms.ratio_bp, 10_000))
    fund = min(fund, max(0, terms.annual_fund_cap_fen - before.fund_paid_fen))
    person = medfee - fund
    # the delivery fee is always cash: the personal account pays at most the rest
    acct = min(person - case.delivery_fee_fen, before.acct_balc_fen) if case.acct_used_flag and terms.acct_allowed else 0
    return {
        "medfee_sumamt_fen": medfee,
        "fulamt_ownpay_amt_fen": fulamt,
        "overlmt_selfpay_fen": overlmt,
        "preselfpay_amt_fen": preselfpay,
        "inscp_scp_amt_fen": inscp,
        "act_pay_dedc_fen": dedc,
        "hifp_pay_fen": fund,
        "fund_pay_sumamt_fen": fund,
        "psn_part_amt_fen": person,
        "hosp_part_amt_fen": 0,
        "acct_pay_fen": acct,
        "psn_cash_pay_fen": person - acct,
        "balc_fen": before.acct_balc_fen - acct,
    }


# ---- properties ----------------------------------------------------------


def check_split_follows_the_rules(case: Case) -> None:
    split = run(case)
    expected = expected_amounts(case)
    actual = {name: getattr(split, name) for name in expected}
    assert actual == expected


def check_every_identity_holds(case: Case) -> None:
    s = run(case)
    assert s.medfee_sumamt_fen == s.fulamt_ownpay_amt_fen + s.overlmt_selfpay_fen + s.preselfpay_amt_fen + s.inscp_scp_amt_fen
    assert s.medfee_sumamt_fen == s.fund_pay_sumamt_fen + s.psn_part_amt_fen + s.hosp_part_amt_fen
    assert s.psn_part_amt_fen == s.acct_pay_fen + s.psn_cash_pay_fen
    assert s.identity_errors() == []
    # the bill total is what the hospital billed, plus the delivery fee
    assert s.medfee_sumamt_fen == sum(line.cnt * line.pric_fen for line, _ in case.priced) + case.delivery_fee_fen


def check_amounts_are_non_negative_and_bounded(case: Case) -> None:
    s = run(case)
    for name in AMOUNT_FIELDS:
        assert getattr(s, name) >= 0, name
    before, terms = case.before, case.terms
    # the personal account pays at most its balance and never goes below zero
    assert s.acct_pay_fen <= before.acct_balc_fen
    assert s.balc_fen >= 0
    assert s.balc_fen == before.acct_balc_fen - s.acct_pay_fen
    # the fund never goes past the annual cap (and pays nothing once it is reached)
    assert s.hifp_pay_fen <= max(0, terms.annual_fund_cap_fen - before.fund_paid_fen)
    if before.fund_paid_fen <= terms.annual_fund_cap_fen:
        assert before.fund_paid_fen + s.hifp_pay_fen <= terms.annual_fund_cap_fen
    # the deductible is never over-collected
    assert s.act_pay_dedc_fen <= max(0, terms.deductible_fen - before.dedc_used_fen)
    assert s.act_pay_dedc_fen <= s.inscp_scp_amt_fen
    # the fund pays only from the eligible amount above the deductible, at the ratio
    assert s.hifp_pay_fen <= s.inscp_scp_amt_fen - s.act_pay_dedc_fen
    if terms.ratio_bp == 0:
        assert s.hifp_pay_fen == 0
    # the account pays only when the person chose it and the policy allows it
    if not (case.acct_used_flag and case.terms.acct_allowed):
        assert s.acct_pay_fen == 0
    else:
        # the account is used as far as it goes: either the balance or the whole share but
        # the delivery fee (always cash) is spent
        assert s.acct_pay_fen == s.psn_part_amt_fen - case.delivery_fee_fen or s.balc_fen == 0
    assert s.psn_cash_pay_fen >= case.delivery_fee_fen


def check_line_splits_add_up_to_the_bill(case: Case) -> None:
    s = run(case)
    assert [ls.feedetl_sn for ls in s.line_splits] == [line.feedetl_sn for line, _ in case.priced]
    for ls, (line, item) in zip(s.line_splits, case.priced):
        assert ls.category == item.category
        assert ls.det_item_fee_sumamt_fen == line.cnt * line.pric_fen
        assert ls.det_item_fee_sumamt_fen == (
            ls.fulamt_ownpay_amt_fen + ls.overlmt_selfpay_fen + ls.preselfpay_amt_fen + ls.inscp_scp_amt_fen
        )
        if item.category == Category.C:
            assert ls.fulamt_ownpay_amt_fen == ls.det_item_fee_sumamt_fen
        else:
            assert ls.fulamt_ownpay_amt_fen == 0
        if item.category != Category.B:
            assert ls.preselfpay_amt_fen == 0
        if item.price_cap_fen is None or line.pric_fen <= item.price_cap_fen:
            assert ls.overlmt_selfpay_fen == 0
    assert s.fulamt_ownpay_amt_fen == sum(ls.fulamt_ownpay_amt_fen for ls in s.line_splits) + case.delivery_fee_fen
    assert s.overlmt_selfpay_fen == sum(ls.overlmt_selfpay_fen for ls in s.line_splits)
    assert s.preselfpay_amt_fen == sum(ls.preselfpay_amt_fen for ls in s.line_splits)
    assert s.inscp_scp_amt_fen == sum(ls.inscp_scp_amt_fen for ls in s.line_splits)


@settings(max_examples=80, deadline=None)
@given(cases(), st.integers(1, 1_000_000))
def test_delivery_fee_changes_only_the_self_paid_part(case: Case, fee_fen: int) -> None:
    without = split_bill(case.priced, case.terms, case.before.copy(), case.acct_used_flag, 0)
    with_fee = split_bill(case.priced, case.terms, case.before.copy(), case.acct_used_flag, fee_fen)
    assert with_fee.fulamt_ownpay_amt_fen == without.fulamt_ownpay_amt_fen + fee_fen
    assert with_fee.medfee_sumamt_fen == without.medfee_sumamt_fen + fee_fen
    assert with_fee.psn_part_amt_fen == without.psn_part_amt_fen + fee_fen
    # the fund and the deductible do not see the delivery fee at all
    for name in ("inscp_scp_amt_fen", "act_pay_dedc_fen", "hifp_pay_fen", "fund_pay_sumamt_fen"):
        assert getattr(with_fee, name) == getattr(without, name), name


def check_split_does_not_mutate_the_accumulators(case: Case) -> None:
    before = case.before.copy()
    split_bill(case.priced, case.terms, before, case.acct_used_flag, case.delivery_fee_fen)
    assert before == case.before


def check_reversal_is_the_exact_negation(case: Case) -> None:
    s = run(case)
    after = accumulate(case.before, s)
    restored_balance = after.acct_balc_fen + s.acct_pay_fen
    r = s.negated(balc_fen=restored_balance)
    for name in AMOUNT_FIELDS:
        assert getattr(r, name) == -getattr(s, name), name
    assert r.balc_fen == restored_balance == case.before.acct_balc_fen
    assert len(r.line_splits) == len(s.line_splits)
    for rl, sl in zip(r.line_splits, s.line_splits):
        assert (rl.feedetl_sn, rl.category) == (sl.feedetl_sn, sl.category)
        assert rl.det_item_fee_sumamt_fen == -sl.det_item_fee_sumamt_fen
        assert rl.fulamt_ownpay_amt_fen == -sl.fulamt_ownpay_amt_fen
        assert rl.overlmt_selfpay_fen == -sl.overlmt_selfpay_fen
        assert rl.preselfpay_amt_fen == -sl.preselfpay_amt_fen
        assert rl.inscp_scp_amt_fen == -sl.inscp_scp_amt_fen
    # the identities are linear, so the reversal satisfies them too
    assert r.identity_errors() == []
    # reversing twice gives the original back
    assert r.negated(balc_fen=s.balc_fen) == s


def check_accumulate_then_reverse_returns_to_the_start(case: Case) -> None:
    s = run(case)
    after = accumulate(case.before, s)
    assert after.dedc_used_fen == case.before.dedc_used_fen + s.act_pay_dedc_fen
    assert after.fund_paid_fen == case.before.fund_paid_fen + s.hifp_pay_fen
    assert after.acct_balc_fen == s.balc_fen
    back = accumulate(after, s.negated(balc_fen=after.acct_balc_fen + s.acct_pay_fen))
    assert back == case.before


@PROPS
@given(cases())
def test_any_bill_any_terms_any_person(case: Case) -> None:
    """Generating a 50-line bill is the expensive part, so every property of a
    single split is checked on each generated case."""
    check_split_does_not_mutate_the_accumulators(case)
    check_split_follows_the_rules(case)
    check_every_identity_holds(case)
    check_amounts_are_non_negative_and_bounded(case)
    check_line_splits_add_up_to_the_bill(case)
    check_reversal_is_the_exact_negation(case)
    check_accumulate_then_reverse_returns_to_the_start(case)


@settings(max_examples=60, deadline=None)
@given(
    terms=terms_strategy,
    opening_balance=st.integers(0, 10**7),
    bills=st.lists(st.tuples(priced_bills(max_lines=5), st.booleans()), min_size=1, max_size=20),
    data=st.data(),
)
def test_a_year_of_bills_for_one_person(terms: SplitTerms, opening_balance: int, bills, data) -> None:
    """Settlements chained through the accumulators: the deductible is collected
    at most once a year, the fund never passes the cap, the account never goes
    negative; reversing them (in any order) restores the opening state."""
    start = Accumulators(0, 0, opening_balance)
    state = start.copy()
    splits = []
    for priced, acct_used_flag in bills:
        s = split_bill(priced, terms, state, acct_used_flag)
        splits.append(s)
        state = accumulate(state, s)
        assert state.acct_balc_fen >= 0
        if s.hifp_pay_fen > 0:
            # the fund pays only above the deductible: it is met after this bill
            assert state.dedc_used_fen == terms.deductible_fen
    assert state.dedc_used_fen == sum(s.act_pay_dedc_fen for s in splits) <= terms.deductible_fen
    assert state.fund_paid_fen == sum(s.hifp_pay_fen for s in splits) <= terms.annual_fund_cap_fen
    assert state.acct_balc_fen == opening_balance - sum(s.acct_pay_fen for s in splits)
    order = data.draw(st.permutations(range(len(splits))))
    for i in order:
        s = splits[i]
        state = accumulate(state, s.negated(balc_fen=state.acct_balc_fen + s.acct_pay_fen))
    assert state == start

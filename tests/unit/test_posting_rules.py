"""Posting rules (DESIGN.md "The ledger"): double entry per book, cross-region
reciprocity, reversals as exact contra-entries."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.rules import Posting, settlement_postings, unbalanced_books
from medsettle.ledger.settlement.model import PayLoc, pay_loc_of

PROPS = settings(max_examples=300, deadline=None)

REGIONS = ["440100", "440300", "440600", "130100", "130200", "310100"]
PAYEES = ["H44010100001", "P44030100001", "H13010100001", "H31010100001"]

amounts = st.integers(min_value=0, max_value=10**11)


@st.composite
def region_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """(insuplc, mdtrtarea): local, in-province or cross-province, each drawn on purpose."""
    kind = draw(st.sampled_from(PayLoc))
    insuplc = draw(st.sampled_from(REGIONS))
    if kind == PayLoc.LOCAL:
        return insuplc, insuplc
    same = [r for r in REGIONS if r != insuplc and r[:2] == insuplc[:2]]
    other = [r for r in REGIONS if r[:2] != insuplc[:2]]
    if kind == PayLoc.IN_PROVINCE and same:
        return insuplc, draw(st.sampled_from(same))
    return insuplc, draw(st.sampled_from(other))


def book_sums(postings: Iterable[Posting]) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for p in postings:
        sums[p.book] += p.amount_fen
    return dict(sums)


def balances(postings: Iterable[Posting]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for p in postings:
        out[(p.book, p.account)] += p.amount_fen
    return out


def expected_postings(insuplc: str, mdtrtarea: str, payee: str, hifp: int, acct: int) -> Counter[tuple[str, str]]:
    """DESIGN.md's entries, as a multiset of (book, account) -> amount, zeros left out."""
    owed = hifp + acct
    if insuplc == mdtrtarea:
        entries = {
            (insuplc, "fund:pool"): hifp,
            (insuplc, "fund:personal_accounts"): acct,
            (insuplc, f"payable:institution:{payee}"): -owed,
        }
    else:
        entries = {
            (mdtrtarea, f"receivable:agency:{insuplc}"): owed,
            (mdtrtarea, f"payable:institution:{payee}"): -owed,
            (insuplc, "fund:pool"): hifp,
            (insuplc, "fund:personal_accounts"): acct,
            (insuplc, f"payable:agency:{mdtrtarea}"): -owed,
        }
    return Counter({k: v for k, v in entries.items() if v != 0})


# ---- examples ------------------------------------------------------------


def test_local_visit_postings() -> None:
    postings = settlement_postings("440100", "440100", "H44010100001", 8000, 1500)
    assert Counter(postings) == Counter([
        Posting("440100", "fund:pool", 8000),
        Posting("440100", "fund:personal_accounts", 1500),
        Posting("440100", "payable:institution:H44010100001", -9500),
    ])


def test_cross_province_visit_postings() -> None:
    # insured in Shanghai, treated in Guangzhou
    postings = settlement_postings("310100", "440100", "H44010100001", 8000, 0)
    assert Counter(postings) == Counter([
        Posting("440100", "receivable:agency:310100", 8000),
        Posting("440100", "payable:institution:H44010100001", -8000),
        Posting("310100", "fund:pool", 8000),
        Posting("310100", "payable:agency:440100", -8000),
    ])  # the zero personal-account posting is left out


def test_nothing_paid_by_fund_or_account_posts_nothing() -> None:
    # the cash part is paid by the person at the counter and is not posted
    assert settlement_postings("440100", "440100", "H44010100001", 0, 0) == []
    assert settlement_postings("310100", "440100", "H44010100001", 0, 0) == []


def test_unbalanced_books_reports_each_broken_book_with_its_sum() -> None:
    postings = settlement_postings("310100", "440100", "H44010100001", 700, 300)
    assert unbalanced_books(postings) == {}
    broken = [p for p in postings if p.account != "fund:pool"] + [Posting("440100", "fund:pool", 5)]
    assert unbalanced_books(broken) == {"310100": -700, "440100": 5}


def test_account_names() -> None:
    assert accounts.payable_institution("H1") == "payable:institution:H1"
    assert accounts.receivable_agency("440100") == "receivable:agency:440100"
    assert accounts.payable_agency("440100") == "payable:agency:440100"
    assert accounts.province_book("44") == "province:44"
    assert accounts.clearing_province("44") == "clearing:province:44"
    assert accounts.prepaid_agency("130100") == "prepaid:agency:130100"
    with pytest.raises(AssertionError):
        accounts.province_book("440")


# ---- properties ----------------------------------------------------------


@PROPS
@given(region_pairs(), st.sampled_from(PAYEES), amounts, amounts)
def test_postings_follow_the_design_and_balance_per_book(pair, payee, hifp, acct) -> None:
    insuplc, mdtrtarea = pair
    postings = settlement_postings(insuplc, mdtrtarea, payee, hifp, acct)
    assert unbalanced_books(postings) == {}
    assert all(total == 0 for total in book_sums(postings).values())
    assert all(p.amount_fen != 0 for p in postings)
    assert balances(postings) == expected_postings(insuplc, mdtrtarea, payee, hifp, acct)
    # the institution is owed exactly the fund part plus the account part
    assert sum(p.amount_fen for p in postings if p.account == f"payable:institution:{payee}") == -(hifp + acct)
    # only the two agencies' books are touched
    assert {p.book for p in postings} <= {insuplc, mdtrtarea}


@PROPS
@given(region_pairs().filter(lambda pair: pair[0] != pair[1]), st.sampled_from(PAYEES), amounts, amounts)
def test_cross_region_reciprocity(pair, payee, hifp, acct) -> None:
    insuplc, mdtrtarea = pair
    assert pay_loc_of(insuplc, mdtrtarea) in (PayLoc.IN_PROVINCE, PayLoc.CROSS_PROVINCE)
    b = balances(settlement_postings(insuplc, mdtrtarea, payee, hifp, acct))
    receivable = b[(mdtrtarea, f"receivable:agency:{insuplc}")]
    payable = b[(insuplc, f"payable:agency:{mdtrtarea}")]
    assert receivable == -payable == hifp + acct
    # the treatment book never touches the insurance place's fund, and vice versa
    assert b[(mdtrtarea, "fund:pool")] == 0 and b[(mdtrtarea, "fund:personal_accounts")] == 0
    assert b[(insuplc, f"payable:institution:{payee}")] == 0


@PROPS
@given(region_pairs(), st.sampled_from(PAYEES), amounts, amounts)
def test_reversal_postings_are_the_exact_negation(pair, payee, hifp, acct) -> None:
    insuplc, mdtrtarea = pair
    original = settlement_postings(insuplc, mdtrtarea, payee, hifp, acct)
    reversal = settlement_postings(insuplc, mdtrtarea, payee, -hifp, -acct)
    assert reversal == [Posting(p.book, p.account, -p.amount_fen) for p in original]
    assert unbalanced_books(reversal) == {}
    assert all(total == 0 for total in balances(original + reversal).values())


settlement = st.tuples(region_pairs(), st.sampled_from(PAYEES), amounts, amounts)


@settings(max_examples=150, deadline=None)
@given(st.lists(settlement, min_size=1, max_size=40), st.data())
def test_settlements_and_reversals_keep_every_book_balanced(settlements, data) -> None:
    journal: list[Posting] = []
    to_reverse = data.draw(st.sets(st.integers(0, len(settlements) - 1)))
    for i, ((insuplc, mdtrtarea), payee, hifp, acct) in enumerate(settlements):
        journal += settlement_postings(insuplc, mdtrtarea, payee, hifp, acct)
        assert unbalanced_books(journal) == {}
    for i in sorted(to_reverse, reverse=True):
        (insuplc, mdtrtarea), payee, hifp, acct = settlements[i]
        journal += settlement_postings(insuplc, mdtrtarea, payee, -hifp, -acct)
        assert unbalanced_books(journal) == {}
    b = balances(journal)
    # reciprocity holds on the running balances of every agency pair
    for insuplc in REGIONS:
        for mdtrtarea in REGIONS:
            if insuplc != mdtrtarea:
                assert b[(mdtrtarea, f"receivable:agency:{insuplc}")] == -b[(insuplc, f"payable:agency:{mdtrtarea}")]
    # what remains is exactly the settlements that were not reversed
    kept = [s for i, s in enumerate(settlements) if i not in to_reverse]
    expected: Counter[tuple[str, str]] = Counter()
    for (insuplc, mdtrtarea), payee, hifp, acct in kept:
        for key, value in expected_postings(insuplc, mdtrtarea, payee, hifp, acct).items():
            expected[key] += value
    assert {k: v for k, v in b.items() if v} == {k: v for k, v in expected.items() if v}

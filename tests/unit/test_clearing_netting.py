"""Netting through the provincial clearing book (pure): the positions sum to
zero, the clearing entry balances per book and zeroes every reciprocal
balance of the province's agencies, prepaid draws never exceed the fund or
the debt, and the agency/province sides of each position mirror each other."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clearing.netting import ReciprocalBalance, clear, net_positions, prepay_postings
from medsettle.ledger.clearing.reconcile import reciprocal_balances
from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.rules import unbalanced_books

PROVINCE = "44"
HERE = ["440100", "440300", "440600", "441900"]
ELSEWHERE = ["130100", "130200", "310100"]

pairs = st.tuples(st.sampled_from(HERE + ELSEWHERE), st.sampled_from(HERE + ELSEWHERE)).filter(
    lambda p: p[0] != p[1] and PROVINCE in (p[0][:2], p[1][:2])
)
balances_strategy = st.lists(
    st.builds(lambda pair, amount: ReciprocalBalance(pair[0], pair[1], amount), pairs,
              st.integers(-10**9, 10**11)),
    max_size=30,
)
prepaid_strategy = st.dictionaries(st.sampled_from(HERE), st.integers(0, 10**11))


def book_balances_from(balances: list[ReciprocalBalance]) -> dict[tuple[str, str], int]:
    """The reciprocal balances as the ledger's books hold them (both sides)."""
    books: dict[tuple[str, str], int] = defaultdict(int)
    for b in balances:
        books[(b.treatment, accounts.receivable_agency(b.insurance))] += b.amount_fen
        books[(b.insurance, accounts.payable_agency(b.treatment))] -= b.amount_fen
    return dict(books)


@settings(max_examples=300, deadline=None)
@given(balances_strategy, prepaid_strategy)
def test_positions_sum_to_zero_and_clearing_zeroes_every_reciprocal_balance(balances, prepaid):
    books = book_balances_from(balances)
    own_books = {key: amount for key, amount in books.items() if key[0][:2] == PROVINCE}
    result = clear(PROVINCE, reciprocal_balances(own_books, PROVINCE), prepaid)

    assert sum(p.net_fen for p in result.positions) == 0
    assert not unbalanced_books(result.postings)
    after = dict(own_books)
    for posting in result.postings:
        after[(posting.book, posting.account)] = after.get((posting.book, posting.account), 0) + posting.amount_fen
    for (book, account), amount in after.items():
        if account.startswith(("receivable:agency:", "payable:agency:")):
            assert amount == 0, (book, account)
    for position in result.positions:
        owed = max(0, -position.net_fen)
        assert 0 <= position.prepaid_drawn_fen <= min(owed, position.prepaid_available_fen)
        if position.is_agency:
            assert position.prepaid_drawn_fen == min(owed, prepaid.get(position.party, 0))
            assert position.shortfall_fen == owed - position.prepaid_drawn_fen
            # the agency's clearing account mirrors the provincial book's account for it
            agency_side = after.get((position.party, accounts.clearing_province(PROVINCE)), 0)
            province_side = after.get((accounts.province_book(PROVINCE), accounts.clearing_agency(position.party)), 0)
            assert agency_side == position.to_settle_fen == -province_side
        else:
            assert position.party in {"province:13", "province:31"} and position.prepaid_drawn_fen == 0


@given(balances_strategy)
def test_net_position_of_a_party_is_what_it_is_owed_less_what_it_owes(balances):
    def party(admdvs: str) -> str:
        return admdvs if admdvs[:2] == PROVINCE else f"province:{admdvs[:2]}"

    positions = net_positions(PROVINCE, balances)
    for name, net in positions.items():
        owed_to = sum(b.amount_fen for b in balances if party(b.treatment) == name)
        owed_by = sum(b.amount_fen for b in balances if party(b.insurance) == name)
        assert net == owed_to - owed_by


def test_cross_province_flows_net_against_one_counterpart_per_province():
    balances = [
        ReciprocalBalance("440100", "130100", 5_000),  # Hebei owes Guangzhou
        ReciprocalBalance("440300", "130200", 2_000),  # another Hebei agency owes Shenzhen
        ReciprocalBalance("130100", "440600", 3_000),  # Foshan owes a Hebei agency
    ]
    positions = {p.party: p.net_fen for p in clear(PROVINCE, balances, {}).positions}
    assert positions == {"440100": 5_000, "440300": 2_000, "440600": -3_000, "province:13": -4_000}


def test_a_pair_outside_the_province_or_of_one_agency_is_refused():
    with pytest.raises(ValueError, match="not in province 44"):
        net_positions(PROVINCE, [ReciprocalBalance("130100", "310100", 1)])
    with pytest.raises(ValueError, match="two agencies"):
        net_positions(PROVINCE, [ReciprocalBalance("440100", "440100", 1)])


def test_a_prepayment_balances_in_both_books():
    postings = prepay_postings(PROVINCE, "440600", 12_345)
    assert not unbalanced_books(postings)
    assert {(p.book, p.account, p.amount_fen) for p in postings} >= {
        ("province:44", "prepaid:agency:440600", -12_345), ("440600", "prepaid:province:44", 12_345),
    }

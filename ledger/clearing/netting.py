"""Multilateral netting through the provincial clearing book (pure).

Input: the period's reciprocal balances seen from the province's own agency
books: for a treatment agency T and an insurance agency I, `amount_fen` is
what I owes T for the period (T's receivable:agency:I, equal to minus I's
payable:agency:T). At least one of T, I is in the province; an agency of
another province is represented by one counterpart per other province
("province:QQ"), the national platform's side of the cross-province flow.

The clearing entry (one journal entry; debit > 0, credit < 0):
  T's book (T in PP):  Dr clearing:province:PP a / Cr receivable:agency:I a
  I's book (I in PP):  Dr payable:agency:T a     / Cr clearing:province:PP a
  provincial book:     Cr clearing:agency:A n_A for each agency A,
                       Cr clearing:province:QQ n_QQ for each counterpart
where n is the party's net position (what the province owes it; negative:
what it owes the province). The positions sum to zero, so the provincial
book balances; every in-province agency's reciprocal balances become zero.

Prepaid funds: an insurance-place agency A that owes (n_A < 0) has the
province draw on its prepaid fund first, d = min(prepaid, -n_A):
  provincial book: Dr prepaid:agency:A d / Cr clearing:agency:A d
  A's book:        Dr clearing:province:PP d / Cr prepaid:province:PP d
What the fund does not cover (-n_A - d) is A's shortfall: it must pay the
province that much (a payment instruction), and it is reported.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.rules import Posting


@dataclass(frozen=True, slots=True)
class ReciprocalBalance:
    treatment: str  # T, 6-digit region code
    insurance: str  # I
    amount_fen: int  # what I owes T for the period (may be negative after reversals)


@dataclass(frozen=True, slots=True)
class Position:
    party: str  # an agency of the province ("440100") or a counterpart ("province:13")
    net_fen: int  # what the province owes the party; negative: the party owes the province
    prepaid_available_fen: int  # the party's prepaid fund before this clearing
    prepaid_drawn_fen: int

    @property
    def is_agency(self) -> bool:
        return not self.party.startswith("province:")

    @property
    def to_settle_fen(self) -> int:
        """Left to pay in money after the prepaid draw (> 0: the province pays)."""
        return self.net_fen + self.prepaid_drawn_fen

    @property
    def shortfall_fen(self) -> int:
        """What the prepaid fund did not cover of the party's debt."""
        return max(0, -self.to_settle_fen) if self.is_agency else 0


@dataclass(frozen=True, slots=True)
class Clearing:
    positions: tuple[Position, ...]  # sorted by party
    postings: tuple[Posting, ...]


def in_province(admdvs: str, province: str) -> bool:
    return admdvs[:2] == province


def party_of(admdvs: str, province: str) -> str:
    """The agency itself, or its province's counterpart if it is elsewhere."""
    return admdvs if in_province(admdvs, province) else accounts.province_book(admdvs[:2])


def net_positions(province: str, balances: Iterable[ReciprocalBalance]) -> dict[str, int]:
    """Each party's multilateral net position; the values sum to zero."""
    positions: dict[str, int] = defaultdict(int)
    for balance in balances:
        _check_pair(balance, province)
        positions[party_of(balance.treatment, province)] += balance.amount_fen
        positions[party_of(balance.insurance, province)] -= balance.amount_fen
    return dict(positions)


def clear(province: str, balances: Iterable[ReciprocalBalance], prepaid_fen: Mapping[str, int]) -> Clearing:
    """The positions and the postings of the clearing entry (see the module doc)."""
    balances = list(balances)
    clearing = accounts.clearing_province(province)
    book = accounts.province_book(province)
    postings: list[Posting] = []
    for b in balances:
        if b.amount_fen == 0:
            continue
        if in_province(b.treatment, province):
            postings.append(Posting(b.treatment, clearing, b.amount_fen))
            postings.append(Posting(b.treatment, accounts.receivable_agency(b.insurance), -b.amount_fen))
        if in_province(b.insurance, province):
            postings.append(Posting(b.insurance, accounts.payable_agency(b.treatment), b.amount_fen))
            postings.append(Posting(b.insurance, clearing, -b.amount_fen))
    positions = []
    for party, net_fen in sorted(net_positions(province, balances).items()):
        available = max(0, prepaid_fen.get(party, 0)) if not party.startswith("province:") else 0
        drawn = min(available, -net_fen) if net_fen < 0 else 0
        positions.append(Position(party, net_fen, available, drawn))
        if net_fen != 0:
            position_account = (accounts.clearing_agency(party) if not party.startswith("province:")
                                else accounts.clearing_province(party.removeprefix("province:")))
            postings.append(Posting(book, position_account, -net_fen))
        if drawn:
            postings.append(Posting(book, accounts.prepaid_agency(party), drawn))
            postings.append(Posting(book, accounts.clearing_agency(party), -drawn))
            postings.append(Posting(party, clearing, drawn))
            postings.append(Posting(party, accounts.prepaid_province(province), -drawn))
    return Clearing(tuple(positions), tuple(postings))


def prepay_postings(province: str, agency: str, amount_fen: int) -> list[Posting]:
    """An insurance-place agency pays into its prepaid fund at the province."""
    assert in_province(agency, province) and amount_fen > 0, (province, agency, amount_fen)
    book = accounts.province_book(province)
    return [
        Posting(agency, accounts.prepaid_province(province), amount_fen),
        Posting(agency, accounts.FUND_POOL, -amount_fen),
        Posting(book, accounts.CLEARING_BANK, amount_fen),
        Posting(book, accounts.prepaid_agency(agency), -amount_fen),
    ]


def _check_pair(balance: ReciprocalBalance, province: str) -> None:
    if balance.treatment == balance.insurance:
        raise ValueError(f"a reciprocal pair needs two agencies, got {balance.treatment} twice")
    if not (in_province(balance.treatment, province) or in_province(balance.insurance, province)):
        raise ValueError(f"pair {balance.treatment}<-{balance.insurance} is not in province {province}")

"""Ledger invariants over derived balances: every book's trial balance is
zero; every reciprocal pair matches (T's receivable:agency:I equals I's
payable:agency:T, with opposite sign)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

RECEIVABLE = "receivable:agency:"
PAYABLE = "payable:agency:"


@dataclass(frozen=True, slots=True)
class Break:
    kind: str  # "trial_balance" or "reciprocity"
    where: str
    amount_fen: int  # the difference
    detail: str


def trial_balance_breaks(balances: Mapping[tuple[str, str], int]) -> list[Break]:
    totals: dict[str, int] = defaultdict(int)
    for (book, _), amount in balances.items():
        totals[book] += amount
    return [
        Break("trial_balance", book, total, f"book {book} sums to {total} fen, not 0")
        for book, total in sorted(totals.items())
        if total != 0
    ]


def reciprocity_breaks(balances: Mapping[tuple[str, str], int]) -> list[Break]:
    breaks = []
    pairs: set[tuple[str, str]] = set()
    for book, account in balances:
        if account.startswith(RECEIVABLE):
            pairs.add((book, account[len(RECEIVABLE):]))
        elif account.startswith(PAYABLE):
            pairs.add((account[len(PAYABLE):], book))
    for treatment, insurance in sorted(pairs):
        receivable = balances.get((treatment, RECEIVABLE + insurance), 0)
        payable = balances.get((insurance, PAYABLE + treatment), 0)
        if receivable + payable != 0:
            breaks.append(Break(
                "reciprocity", f"{treatment}<->{insurance}", receivable + payable,
                f"{treatment} receivable:agency:{insurance} = {receivable} fen but "
                f"{insurance} payable:agency:{treatment} = {payable} fen",
            ))
    return breaks

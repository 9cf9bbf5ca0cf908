"""Posting rules (DESIGN.md "The ledger"). Amounts are signed: a debit is
positive, a credit negative; the postings of one entry sum to zero per book.

Local visit, agency A:   Dr A fund:pool (fund part), Dr A fund:personal_accounts
                         (account part) / Cr A payable:institution:H.
Cross-region, insured in I, treated in T:
  T's book: Dr receivable:agency:I / Cr payable:institution:H
  I's book: Dr fund:pool + fund:personal_accounts / Cr payable:agency:T
The cash part is paid by the person to the institution and is not posted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from medsettle.ledger.posting.accounts import (
    FUND_PERSONAL_ACCOUNTS,
    FUND_POOL,
    payable_agency,
    payable_institution,
    receivable_agency,
)


@dataclass(frozen=True, slots=True)
class Posting:
    book: str
    account: str
    amount_fen: int  # debit > 0, credit < 0


def settlement_postings(
    insuplc_admdvs: str,
    mdtrtarea_admvs: str,
    payee_code: str,
    hifp_pay_fen: int,
    acct_pay_fen: int,
) -> list[Posting]:
    """The postings of one settlement; a reversal passes negative amounts."""
    return [Posting(book, account, amount) for book, account, amount in
            posting_lines(insuplc_admdvs, mdtrtarea_admvs, payee_code, hifp_pay_fen, acct_pay_fen)]


def posting_lines(
    insuplc_admdvs: str,
    mdtrtarea_admvs: str,
    payee_code: str,
    hifp_pay_fen: int,
    acct_pay_fen: int,
) -> list[tuple[str, str, int]]:
    """settlement_postings as (book, account, amount_fen) tuples: the writer's
    form (once per settlement; it stores and hashes them as tuples)."""
    owed_fen = hifp_pay_fen + acct_pay_fen
    if owed_fen == 0 and hifp_pay_fen == 0:
        return []
    payee = payable_institution(payee_code)
    if insuplc_admdvs == mdtrtarea_admvs:
        book = insuplc_admdvs
        lines = (
            (book, FUND_POOL, hifp_pay_fen),
            (book, FUND_PERSONAL_ACCOUNTS, acct_pay_fen),
            (book, payee, -owed_fen),
        )
    else:
        lines = (
            (mdtrtarea_admvs, receivable_agency(insuplc_admdvs), owed_fen),
            (mdtrtarea_admvs, payee, -owed_fen),
            (insuplc_admdvs, FUND_POOL, hifp_pay_fen),
            (insuplc_admdvs, FUND_PERSONAL_ACCOUNTS, acct_pay_fen),
            (insuplc_admdvs, payable_agency(mdtrtarea_admvs), -owed_fen),
        )
    # only the non-zero postings are kept
    kept = [line for line in lines if line[2] != 0]
    assert _balanced(kept), unbalanced_books(Posting(*line) for line in kept)
    return kept


def _balanced(lines: list[tuple[str, str, int]]) -> bool:
    """Every book's lines sum to zero: not unbalanced_books, without building the report."""
    totals: dict[str, int] = {}
    for book, _, amount in lines:
        totals[book] = totals.get(book, 0) + amount
    return not any(totals.values())


def unbalanced_books(postings: Iterable[Posting]) -> dict[str, int]:
    """Books whose postings do not sum to zero, with their sums."""
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.book] += posting.amount_fen
    return {book: total for book, total in totals.items() if total != 0}

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

from medsettle.ledger.posting import accounts


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
    owed_fen = hifp_pay_fen + acct_pay_fen
    if owed_fen == 0 and hifp_pay_fen == 0:
        return []
    payee = accounts.payable_institution(payee_code)
    if insuplc_admdvs == mdtrtarea_admvs:
        book = insuplc_admdvs
        lines = (
            (book, accounts.FUND_POOL, hifp_pay_fen),
            (book, accounts.FUND_PERSONAL_ACCOUNTS, acct_pay_fen),
            (book, payee, -owed_fen),
        )
    else:
        lines = (
            (mdtrtarea_admvs, accounts.receivable_agency(insuplc_admdvs), owed_fen),
            (mdtrtarea_admvs, payee, -owed_fen),
            (insuplc_admdvs, accounts.FUND_POOL, hifp_pay_fen),
            (insuplc_admdvs, accounts.FUND_PERSONAL_ACCOUNTS, acct_pay_fen),
            (insuplc_admdvs, accounts.payable_agency(mdtrtarea_admvs), -owed_fen),
        )
    # only the non-zero postings are built (once per settlement)
    postings = [Posting(book, account, amount) for book, account, amount in lines if amount != 0]
    assert _balanced(postings), unbalanced_books(postings)
    return postings


def _balanced(postings: list[Posting]) -> bool:
    """not unbalanced_books(postings), without building the report."""
    totals: dict[str, int] = {}
    for posting in postings:
        totals[posting.book] = totals.get(posting.book, 0) + posting.amount_fen
    return not any(totals.values())


def unbalanced_books(postings: Iterable[Posting]) -> dict[str, int]:
    """Books whose postings do not sum to zero, with their sums."""
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.book] += posting.amount_fen
    return {book: total for book, total in totals.items() if total != 0}

"""The clearing reconciliation as it was before it was computed in the
database, kept as a test oracle only: one Python pass over every journal
entry of the period (hash, link, balance, postings against the settlement
row, balances summed by entry period) and the period's reads as they were.
The differential tests compare its statement with `medsettle clear`'s."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from medsettle.ledger.clearing import netting
from medsettle.ledger.clearing.netting import in_province
from medsettle.ledger.clearing.reconcile import (
    MAX_LISTED_BREAKS_PER_KIND,
    BreakLog,
    _entry_break,
    book_breaks,
    institution_breaks,
    reciprocal_balances,
)
from medsettle.ledger.clearing.statement import build_statement, render_json
from medsettle.ledger.clearing.store import ClearingStore, InstitutionTotals, province_book_range
from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.invariants import Break
from medsettle.ledger.posting.journal import GENESIS_HASH
from medsettle.ledger.verify import entry_problems


@dataclass
class OracleResult:
    log: BreakLog
    institutions: list[InstitutionTotals]
    reciprocal: list[netting.ReciprocalBalance]
    prepaid: dict[str, int]

    def statement_json(self, province: str, period: str, cleared_at: str, entry: tuple[int, str] | None) -> str:
        plan = netting.clear(province, self.reciprocal, self.prepaid)
        return render_json(build_statement(province, period, cleared_at, entry, self.institutions, self.reciprocal,
                                           plan, []))


def reconcile_row_by_row(store: ClearingStore, province: str, period: str) -> OracleResult:
    log = BreakLog()
    conn = store.reader()
    with store.snapshot():
        by_entry_period = _verify_period_entries(store, period, log)
        balances = _province_balances(store, period, province)
        log.extend(_misfiled(balances, by_entry_period, province))
        log.extend(book_breaks(balances, store.settlement_agency_balances(period), province))
        low, high = province_book_range(province)
        totals = (InstitutionTotals(*row) for row in conn.execute(
            "SELECT payee_code, mdtrtarea_admvs, COUNT(*), SUM(medfee_sumamt_fen), SUM(fund_pay_sumamt_fen), "
            "SUM(acct_pay_fen), SUM(psn_cash_pay_fen), SUM(hifp_pay_fen + acct_pay_fen) FROM settlements "
            "WHERE setlym = ? AND mdtrtarea_admvs >= ? AND mdtrtarea_admvs < ? "
            "GROUP BY payee_code, mdtrtarea_admvs ORDER BY payee_code, mdtrtarea_admvs", (period, low, high)))
        institutions = institution_breaks(totals, balances, log)
        reciprocal = reciprocal_balances(balances, province)
        prepaid = store.prepaid_balances(province)
    return OracleResult(log, institutions, reciprocal, prepaid)


def _verify_period_entries(store: ClearingStore, period: str, log: BreakLog) -> dict[tuple[str, str], int]:
    conn = store.reader()
    by_entry_period: dict[tuple[str, str], int] = defaultdict(int)
    previous: tuple[int, str] | None = None
    settlement_entries = 0
    for row in store.iter_entry_postings(period):
        settlement_entries += row.settlement is not None
        if previous is not None and previous[0] == row.entry_no - 1:
            expected_prev = previous[1]
        else:
            expected_prev = (GENESIS_HASH if row.entry_no == 1 else store.entry_hash(row.entry_no - 1)) or "(no such entry)"
        problems = entry_problems(row, expected_prev, row.entry_no)
        if problems:
            log.add(_entry_break(row, problems))
        for book, account, amount in row.postings:
            by_entry_period[(book, account)] += amount
        previous = (row.entry_no, row.hash)
    settlements = conn.execute("SELECT COUNT(*) FROM settlements WHERE setlym = ?", (period,)).fetchone()[0]
    if settlements != settlement_entries:
        for (setl_id,) in conn.execute(
                "SELECT s.setl_id FROM settlements s WHERE s.setlym = ? AND NOT EXISTS "
                "(SELECT 1 FROM journal_entries j WHERE j.setl_id = s.setl_id) ORDER BY s.setl_no LIMIT ?",
                (period, MAX_LISTED_BREAKS_PER_KIND)):
            log.add(Break("missing_entry", setl_id, 0, f"settlement {setl_id} has no journal entry"))
    return dict(by_entry_period)


def _province_balances(store: ClearingStore, period: str, province: str) -> dict[tuple[str, str], int]:
    low, high = province_book_range(province)
    rows = store.reader().execute(
        "SELECT book, account, SUM(amount_fen) FROM postings "
        "WHERE setlym = ? AND ((book >= ? AND book < ?) OR book = ?) GROUP BY book, account",
        (period, low, high, accounts.province_book(province)))
    return {(book, account): total for book, account, total in rows}


def _misfiled(by_posting: dict[tuple[str, str], int], by_entry: dict[tuple[str, str], int],
              province: str) -> list[Break]:
    keys = (k for k in set(by_posting) | set(by_entry)
            if in_province(k[0], province) or k[0] == accounts.province_book(province))
    return [Break("posting_period", f"{k[0]} {k[1]}", by_posting.get(k, 0) - by_entry.get(k, 0), "")
            for k in sorted(keys) if by_posting.get(k, 0) != by_entry.get(k, 0)]


def kinds(log: BreakLog) -> dict[str, Any]:
    return dict(log.counts)

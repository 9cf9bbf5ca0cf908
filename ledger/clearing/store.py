"""The SQL of the clearing run. Every read aggregates in the database or
streams through a cursor: nothing here holds a month of settlements.

Reads run in one read transaction (a WAL snapshot, `snapshot()`); the
posting runs in a `BEGIN IMMEDIATE` transaction on the write connection,
which reads the journal's chain head under the lock, as the server's writer
does per batch, so clearing may run while a server appends to the same file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

from medsettle.ledger.clock import parse_period
from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.journal import entry_hash
from medsettle.ledger.posting.rules import Posting
from medsettle.ledger.storage.sqlite import BatchWrite, SqliteLedgerStore, to_us

SORT_THREADS = 2  # helper threads SQLite may sort with (the month's settlements, per payee and place)


@dataclass(frozen=True, slots=True)
class InstitutionTotals:
    fixmedins_code: str  # the payee
    agency: str  # the treatment-place agency whose book holds the payable
    setl_cnt: int  # records, reversals included (as ReconcileTotals counts them)
    medfee_sumamt_fen: int
    fund_pay_sumamt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int
    payable_fen: int  # fund + personal-account parts: what the agency owes the institution


@dataclass(frozen=True, slots=True)
class SettlementGroup:
    """A period's settlements of one payee, treatment place and insurance place, summed."""

    payee_code: str
    treatment: str
    insurance: str
    setl_cnt: int
    medfee_sumamt_fen: int
    fund_pay_sumamt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int
    hifp_pay_fen: int


@dataclass(frozen=True, slots=True)
class ClearingRun:
    province: str
    period: str
    entry_no: int
    cleared_us: int
    statement_json: str
    statement_sha256: str


def province_book_range(province: str) -> tuple[str, str]:
    """[low, high) of the 6-digit agency book names of a province."""
    return province, f"{int(province) + 1:02d}"


def months_between(first: str, last: str) -> Iterator[str]:
    year, month = parse_period(first)
    end = parse_period(last)
    while (year, month) <= end:
        yield f"{year:04d}-{month:02d}"
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


class ClearingStore(SqliteLedgerStore):
    keeps_checkpoints = True  # one hash chain: a verified checkpoint covers every entry before it

    # ---- the read snapshot ------------------------------------------
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one consistent state of the file."""
        conn = self.reader()
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def period_balances(self, period: str) -> dict[tuple[str, str], int]:
        """The period's balance of every account of every book, by the
        postings' own period (read off the covering index, in order)."""
        return self.book_balances(period)

    # SQLite's plan hints, in the SQL below (a backend without them puts plain SQL here)
    NOT_SETTLEMENT_POSTINGS = ("journal_entries j INDEXED BY journal_entries_not_settlements "
                               "CROSS JOIN postings p ON p.entry_no = j.entry_no")
    POSTING_PERIOD = "+p.setlym"  # "+": not off the period index
    MONTH_SCAN = "settlements NOT INDEXED"
    TEXT_ORDER = ""  # SQLite sorts text by its bytes

    def non_settlement_balances(self, period: str) -> dict[tuple[str, str], int]:
        """The period's postings of the entries that are no settlement or
        reversal (clearing, prepayments): few, found by a partial index."""
        rows = self.reader().execute(
            # The plan is spelled out: left to itself SQLite reads the whole month's postings off the
            # period index and looks each one's entry up (minutes for a large month).
            f"SELECT p.book, p.account, SUM(p.amount_fen) FROM {self.NOT_SETTLEMENT_POSTINGS} "
            f"WHERE j.kind NOT IN ('settle', 'reverse') AND {self.POSTING_PERIOD} = ? GROUP BY p.book, p.account",
            (period,),
        )
        return {(book, account): total for book, account, total in rows}

    def prepare_sort(self) -> None:
        self.reader().execute(f"PRAGMA threads = {SORT_THREADS}")

    def settlement_groups(self, period: str, province: str) -> list[SettlementGroup]:
        """The period's settlements (reversals included) with a side in the
        province, summed per (payee, treatment place, insurance place): one
        pass over the table, sorted by the database."""
        low, high = province_book_range(province)
        self.prepare_sort()
        order = self.TEXT_ORDER
        rows = self.reader().execute(
            "SELECT payee_code, mdtrtarea_admvs, insuplc_admdvs, COUNT(*), SUM(medfee_sumamt_fen), "
            "SUM(fund_pay_sumamt_fen), SUM(acct_pay_fen), SUM(psn_cash_pay_fen), SUM(hifp_pay_fen) "
            # NOT INDEXED: a whole month is read in table order; settlements_by_period would fetch every row
            # in another order, at random
            f"FROM {self.MONTH_SCAN} WHERE setlym = ? "
            "AND ((mdtrtarea_admvs >= ? AND mdtrtarea_admvs < ?) OR (insuplc_admdvs >= ? AND insuplc_admdvs < ?)) "
            "GROUP BY payee_code, mdtrtarea_admvs, insuplc_admdvs "
            f"ORDER BY payee_code{order}, mdtrtarea_admvs{order}, insuplc_admdvs{order}",
            (period, low, high, low, high),
        )
        return [SettlementGroup(*row) for row in rows]

    def misfiled_since(self, period: str, after_entry_no: int) -> tuple[dict[tuple[str, str], int], int]:
        """Postings of the entries after after_entry_no filed in another period
        than their entry, or with no entry: (per account, what the period's
        balances by posting period exceed those by entry period; how many such
        postings concern other periods only)."""
        differences: dict[tuple[str, str], int] = defaultdict(int)
        elsewhere = 0
        for book, account, posting_period, entry_period, amount in self.reader().execute(
            "SELECT p.book, p.account, p.setlym, e.setlym, p.amount_fen FROM postings p "
            "LEFT JOIN journal_entries e ON e.entry_no = p.entry_no "
            "WHERE p.entry_no > ? AND (e.entry_no IS NULL OR e.setlym <> p.setlym)",
            (after_entry_no,),
        ):
            if period not in (posting_period, entry_period):
                elsewhere += 1
                continue
            differences[(book, account)] += amount if posting_period == period else -amount
        return dict(differences), elsewhere

    def settlement_agency_balances(self, period: str | None) -> dict[tuple[str, str], int]:
        """The receivable/payable:agency balances of every book for a period
        (None: all time), from settlement and reversal entries only: another
        province's clearing zeroes its own side, never the pair's history."""
        # Two statements, not "(p.setlym = ? OR ? IS NULL)": with the OR SQLite
        # scans every month's postings; without it a period is read through
        # postings_by_period_book, so clearing costs the same in a ledger of years.
        where, params = ("p.setlym = ? AND ", (period,)) if period is not None else ("", ())
        rows = self.reader().execute(
            "SELECT p.book, p.account, SUM(p.amount_fen) FROM postings p "
            "JOIN journal_entries j ON j.entry_no = p.entry_no "
            f"WHERE {where}j.kind IN ('settle', 'reverse') "
            "AND (p.account LIKE 'receivable:agency:%' OR p.account LIKE 'payable:agency:%') "
            "GROUP BY p.book, p.account",
            params,
        )
        return {(book, account): total for book, account, total in rows}

    def prepaid_balances(self, province: str) -> dict[str, int]:
        """Each agency's prepaid fund held by the province, over all periods
        (prepayments and draws), month by month along the period index."""
        conn = self.reader()
        # Two statements: SQLite reads a lone MIN or MAX off the index's end, both at once by a full scan.
        first = conn.execute("SELECT MIN(setlym) FROM postings").fetchone()[0]
        last = conn.execute("SELECT MAX(setlym) FROM postings").fetchone()[0]
        prefix = accounts.prepaid_agency("")
        funds: dict[str, int] = {}
        if first is None:
            return funds
        for month in months_between(first, last):
            for account, total in conn.execute(
                "SELECT account, SUM(amount_fen) FROM postings WHERE setlym = ? AND book = ? "
                "AND account >= ? AND account < ? GROUP BY account",
                (month, accounts.province_book(province), prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)),
            ):
                # the fund is a liability of the provincial book: a credit
                funds[account[len(prefix):]] = funds.get(account[len(prefix):], 0) - total
        return funds

    # ---- runs ---------------------------------------------------------
    def find_run(self, province: str, period: str) -> ClearingRun | None:
        if self.read_only and self.reader().execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clearing_runs'").fetchone() is None:
            return None  # a ledger from before clearing existed, read as it is (no schema added): never cleared
        row = self.reader().execute(
            "SELECT province, period, entry_no, cleared_us, statement_json, statement_sha256 "
            "FROM clearing_runs WHERE province = ? AND period = ?",
            (province, period),
        ).fetchone()
        return ClearingRun(*row) if row else None

    # ---- the posting transaction (write connection) -----------------
    @contextlib.contextmanager
    def posting(self) -> Iterator[None]:
        """One BEGIN IMMEDIATE transaction: all of it commits, or nothing."""
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def period_mark(self, period: str) -> int:
        """Where the snapshot's journal ends (entries are numbered in commit order)."""
        return self.journal_head()[0]

    def period_appended_since(self, period: str, entry_no: int) -> bool:
        """True if an entry of the period was appended after entry_no (period_mark's)."""
        return self._write.execute(
            "SELECT 1 FROM journal_entries WHERE entry_no > ? AND setlym = ? LIMIT 1", (entry_no, period)
        ).fetchone() is not None

    def run_exists(self, province: str, period: str) -> bool:
        return self._write.execute(
            "SELECT 1 FROM clearing_runs WHERE province = ? AND period = ?", (province, period)
        ).fetchone() is not None

    def append_entry(self, setl_id: str, kind: str, setlym: str, at: dt.datetime,
                     postings: list[Posting]) -> tuple[int, str]:
        """Appends one journal entry continuing the hash chain (inside posting())."""
        _, entry_no, last_hash = self.chain_head()
        entry_no += 1
        created_us = to_us(at)
        digest = entry_hash(last_hash, entry_no, setl_id, kind, setlym, created_us, postings)
        self.insert_batch(BatchWrite(
            entries=[(entry_no, setl_id, kind, setlym, created_us, last_hash, digest)],
            postings=[(entry_no, setlym, p.book, p.account, p.amount_fen) for p in postings],
        ))
        return entry_no, digest

    def record_run(self, run: ClearingRun) -> None:
        self._write.execute(
            "INSERT INTO clearing_runs (province, period, entry_no, cleared_us, statement_json, statement_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (run.province, run.period, run.entry_no, run.cleared_us, run.statement_json, run.statement_sha256),
        )

"""The SQL of the clearing run. Every read aggregates in the database or
streams through a cursor: nothing here holds a month of settlements.

Reads run in one read transaction (a WAL snapshot, `snapshot()`), except
the month's sums, which run on worker threads bounded by that snapshot
(ledger/clearing/month_sums.py); the posting runs in a `BEGIN IMMEDIATE` transaction on the write connection,
which reads the journal's chain head under the lock, as the server's writer
does per batch, so clearing may run while a server appends to the same file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, NamedTuple

from medsettle.ledger.chain_checkpoint import Starts
from medsettle.ledger.clearing.month_sums import MonthSums, ThreadedMonthSums
from medsettle.ledger.clock import parse_period
from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.journal import entry_hash
from medsettle.ledger.posting.rules import Posting
from medsettle.ledger.storage.rows import JournalRow
from medsettle.ledger.storage.sqlite import BatchWrite, SqliteLedgerStore, to_us


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


class SettlementGroup(NamedTuple):
    """A period's settlements of one payee, treatment place and insurance
    place, summed (a tuple: a month has about a hundred thousand of them)."""

    payee_code: str
    treatment: str
    insurance: str
    setl_cnt: int
    medfee_sumamt_fen: int
    fund_pay_sumamt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int
    hifp_pay_fen: int


# entry_no, setl_id, kind, setlym, created_us, prev_hash, hash, the settlement's insuplc_admdvs,
# mdtrtarea_admvs, payee_code, hifp_pay_fen, acct_pay_fen (None: no settlement row), postings text, postings
EntryText = tuple[int, str, str, str, int, str, str, Any, Any, Any, Any, Any, "str | None", int]


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


def misfiled_differences(period: str, rows: Iterable[tuple[str, str, str, str | None, int]],
                         ) -> tuple[dict[tuple[str, str], int], int]:
    """misfiled_since's sums of (book, account, posting period, entry period
    or None, amount) rows: per account of the period, what its balance by
    posting period exceeds the one by entry period; how many rows concern
    other periods only."""
    differences: dict[tuple[str, str], int] = defaultdict(int)
    elsewhere = 0
    for book, account, posting_period, entry_period, amount in rows:
        if period not in (posting_period, entry_period):
            elsewhere += 1
            continue
        differences[(book, account)] += amount if posting_period == period else -amount
    return dict(differences), elsewhere


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

    def period_balances(self, period: str, up_to_posting: int | None = None) -> dict[tuple[str, str], int]:
        """The period's balance of every account of every book, by the
        postings' own period (read off the covering index, in order);
        up_to_posting: of the postings up to that rowid only (a snapshot's)."""
        if up_to_posting is None:
            return self.book_balances(period)
        rows = self.reader().execute(
            "SELECT book, account, SUM(amount_fen) FROM postings WHERE setlym = ? AND rowid <= ? "
            "GROUP BY book, account", (period, up_to_posting))
        return {(book, account): total for book, account, total in rows}

    def month_sums(self, period: str, province: str) -> MonthSums:
        """The period's balances and settlement groups, summed on worker
        threads from here on (inside snapshot(); ledger/clearing/month_sums.py)."""
        return ThreadedMonthSums(self, period, province)

    def snapshot_ends(self) -> tuple[int, int]:
        """(last setl_no, last postings rowid) of the snapshot."""
        conn = self.reader()
        settlements_end = conn.execute("SELECT COALESCE(MAX(setl_no), 0) FROM settlements").fetchone()[0]
        postings_end = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM postings").fetchone()[0]
        return settlements_end, postings_end

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

    def settlement_groups(self, period: str, province: str,
                          up_to_setl_no: int | None = None) -> list[SettlementGroup]:
        """The period's settlements (reversals included) with a side in the
        province, summed per (payee, treatment place, insurance place): one
        pass over the table (up_to_setl_no: the settlements up to that
        number only, a snapshot's), sorted by the database."""
        low, high = province_book_range(province)
        order = self.TEXT_ORDER
        in_range, params = ("", ()) if up_to_setl_no is None else ("setl_no <= ? AND ", (up_to_setl_no,))
        rows = self.reader().execute(
            "SELECT payee_code, mdtrtarea_admvs, insuplc_admdvs, COUNT(*), SUM(medfee_sumamt_fen), "
            "SUM(fund_pay_sumamt_fen), SUM(acct_pay_fen), SUM(psn_cash_pay_fen), SUM(hifp_pay_fen) "
            # NOT INDEXED: a whole month is read in table order; settlements_by_period would fetch every row
            # in another order, at random
            f"FROM {self.MONTH_SCAN} WHERE {in_range}setlym = ? "
            "AND ((mdtrtarea_admvs >= ? AND mdtrtarea_admvs < ?) OR (insuplc_admdvs >= ? AND insuplc_admdvs < ?)) "
            "GROUP BY payee_code, mdtrtarea_admvs, insuplc_admdvs "
            f"ORDER BY payee_code{order}, mdtrtarea_admvs{order}, insuplc_admdvs{order}",
            (*params, period, low, high, low, high),
        )
        return [SettlementGroup._make(row) for row in rows]

    def misfiled_since(self, period: str, start: Starts) -> tuple[dict[tuple[str, str], int], int]:
        """Postings of the entries after the checkpoint filed in another period
        than their entry, or with no entry: (per account, what the period's
        balances by posting period exceed those by entry period; how many such
        postings concern other periods only)."""
        return misfiled_differences(period, self.reader().execute(
            "SELECT p.book, p.account, p.setlym, e.setlym, p.amount_fen FROM postings p "
            "LEFT JOIN journal_entries e ON e.entry_no = p.entry_no "
            "WHERE p.entry_no > ? AND (e.entry_no IS NULL OR e.setlym <> p.setlym)",
            (start.entry_no,),
        ))

    # ---- the one chain since its checkpoint (Starts of chain 0) --------
    def chain_entry_hash(self, chain: int, entry_no: int) -> str | None:
        return self.entry_hash(entry_no)  # one chain

    def entries_since(self, start: Starts) -> Iterator[JournalRow]:
        return self.iter_entry_postings(after_entry_no=start.entry_no)

    def count_entries_since(self, start: Starts, up_to_entry_no: int) -> int:
        return up_to_entry_no - start.entry_no  # numbered without gaps

    def entry_texts_since(self, after_entry_no: int) -> Iterator[EntryText]:
        """Each journal entry after after_entry_no, in order, with its
        settlement's posting inputs (None for other kinds), its postings as
        one text, "rowid,book,account,amount" joined by ";" (a field that is
        not text, or an amount that is not an integer, gets one more ","),
        and how many postings it has. One row per entry: the postings are
        not turned into Python values one by one."""
        return self.reader().execute(
            "SELECT e.entry_no, e.setl_id, e.kind, e.setlym, e.created_us, e.prev_hash, e.hash, "
            "s.insuplc_admdvs, s.mdtrtarea_admvs, s.payee_code, s.hifp_pay_fen, s.acct_pay_fen, "
            "group_concat(p.rowid || ',' || p.book || ',' || p.account || ',' || p.amount_fen || "
            "CASE WHEN typeof(p.book) = 'text' AND typeof(p.account) = 'text' AND typeof(p.amount_fen) = 'integer' "
            "THEN '' ELSE ',' END, ';'), COUNT(p.rowid) "
            "FROM journal_entries e "
            "LEFT JOIN settlements s ON s.setl_id = e.setl_id AND e.kind IN ('settle', 'reverse') "
            "LEFT JOIN postings p ON p.entry_no = e.entry_no "
            "WHERE e.entry_no > ? GROUP BY e.entry_no ORDER BY e.entry_no",
            (after_entry_no,),
        )

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

    checkpointing = posting  # `medsettle verify --checkpoint`'s: BEGIN IMMEDIATE, one appender at a time

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

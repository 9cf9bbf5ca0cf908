"""Reconciliation before any clearing posting. Each check streams or
aggregates in the database; a break says what, where and how much.

- the checkpoints hold, and every journal entry after the newest one (of
  any period) passes `medsettle verify`'s checks: it matches its hash, links
  to the entry before it, balances per book, and a settlement's postings are
  what the posting rules make of its amounts (a posting changed behind the
  service's back breaks its entry); every settlement since the checkpoint
  has its entry; no posting since it sits in another period than its entry
  (ledger/chain_checkpoint.py says what a checkpoint vouches for);
- month-wide, summed in the database: the period's settlement postings in
  the province's books are what the posting rules make of the period's
  settlements, account by account;
- every book of the province has a zero trial balance for the period;
- every reciprocal pair with a side in the province matches;
- every institution's settlement totals match its payable account;
- optionally, institution-declared totals (3201/3203 shape) match the
  platform's, with the 0/1/2/3 result per institution and the platform's
  settlements listed where they differ (3202).
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from medsettle.ledger.clearing.netting import ReciprocalBalance, in_province
from medsettle.ledger.clearing.period import ClearingRefused
from medsettle.ledger.chain_checkpoint import Starts, trusted_starts
from medsettle.ledger.clearing.port import ClearingLedger
from medsettle.ledger.clearing.store import EntryText, InstitutionTotals, SettlementGroup
from medsettle.ledger.money import MAX_AMOUNT_FEN
from medsettle.ledger.posting import accounts
from medsettle.ledger.posting.journal import entry_hash
from medsettle.ledger.posting.invariants import PAYABLE, RECEIVABLE, Break, reciprocity_breaks, trial_balance_breaks
from medsettle.ledger.posting.rules import Posting, settlement_postings
from medsettle.ledger.reconcile import StmtResult, Totals, compare_totals
from medsettle.ledger.settlement.model import ClrType
from medsettle.ledger.storage.rows import JournalRow
from medsettle.ledger.verify import (
    SETTLEMENT_KINDS,
    chain_head_problems,
    entry_problems,
    posting_well_typed,
    settlement_well_typed,
)

MAX_LISTED_BREAKS_PER_KIND = 200  # the report counts every break, lists this many of each kind
MAX_LISTED_SETTLEMENTS = 200  # per institution and clr_type whose declared totals differ
MAX_DECLARED_ROWS = 100_000
DECLARED_COLUMNS = (
    "fixmedins_code", "clr_type", "setl_cnt", "medfee_sumamt_fen",
    "fund_pay_sumamt_fen", "acct_pay_fen", "psn_cash_pay_fen",
)
INSTITUTION_CODE = re.compile(r"^[A-Z][0-9]{11}\Z")
PAYABLE_INSTITUTION = accounts.payable_institution("")
PROGRESS_EVERY = 10_000

Progress = Callable[[int], None]  # called with the number of entries just verified


@dataclass(slots=True)
class BreakLog:
    """Every break counted; the first few of each kind kept for the report."""

    listed: list[Break] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, item: Break) -> None:
        self.counts[item.kind] += 1
        if self.counts[item.kind] <= MAX_LISTED_BREAKS_PER_KIND:
            self.listed.append(item)

    def extend(self, items: Iterable[Break]) -> None:
        for item in items:
            self.add(item)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class DeclaredResult:
    """One institution's 3201 result for a clr_type, with the platform's
    records listed (3202) when it is not balanced."""

    fixmedins_code: str
    clr_type: int
    stmt_rslt: StmtResult
    platform: Totals
    declared: Totals
    platform_settlements: tuple[tuple[str, str, int, int], ...] = ()  # setl_id, msgid, medfee, fund


# ---- journal entries since the checkpoint --------------------------------
def checked_from(store: ClearingLedger, log: BreakLog) -> Starts:
    """Where each chain's check begins: after its newest intact checkpoint
    (a chain without one: from its first entry); a checkpoint that does not
    hold is a break and none is trusted (every entry is checked)."""
    start, problems = trusted_starts(store.chain_checkpoints(), store.chain_entry_hash)
    for problem in problems:
        log.add(Break("checkpoint", problem.split(":")[0], 0, problem))
    return start


def verify_since(store: ClearingLedger, start: Starts, up_to_entry_no: int, log: BreakLog,
                 progress: Progress | None = None) -> int:
    """`medsettle verify`'s per-entry checks (hash, link to the entry before,
    per-book balance, postings against the settlement row) over every entry
    after its chain's checkpoint, whatever its period: the entries before it
    were checked when it was recorded. Returns how many entries were checked."""
    texts = store.entry_texts_since(start.entry_no)
    if texts is None:
        return _verify_rows_since(store, start, up_to_entry_no, log, progress)
    last_no, last_hash = start.after(0)
    seen = 0
    for text in texts:
        if text[0] > up_to_entry_no:
            break  # appended after this run's snapshot began (entries come in order)
        if not _entry_holds(text, last_no + 1, last_hash):
            # the checks again on the entry's own rows: they name what is wrong
            rows = store.iter_entry_postings(after_entry_no=text[0] - 1)
            row = next(iter(rows))
            rows.close()  # type: ignore[attr-defined]
            problems = entry_problems(row, last_hash, last_no + 1)
            if problems:
                log.add(_entry_break(row, problems))
        last_no, last_hash = text[0], text[6]
        seen += 1
        if progress is not None and seen % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None:
        progress(seen % PROGRESS_EVERY)
    return seen


def _entry_holds(text: EntryText, expected_no: int, expected_prev: str) -> bool:
    """True only if entry_problems would find nothing: a settlement or
    reversal entry that follows expected_no/expected_prev, whose stored
    postings are, field for field and in insert (rowid) order, what its settlement's
    amounts post (their text splits into exactly those fields: no field
    holds a separator; text fields and an integer amount, else the store
    added a field), so its stored hash must be the hash of those postings.
    Anything else (another kind of entry, any doubt) is checked row by row."""
    entry_no, setl_id, kind, setlym, created_us, prev_hash, stored_hash, insuplc, *amounts, postings_text, count = text
    if entry_no != expected_no or prev_hash != expected_prev or kind not in SETTLEMENT_KINDS or insuplc is None:
        return False
    expected = settlement_postings(insuplc, *amounts)
    lines = postings_text.split(";") if postings_text is not None else []
    if count != len(expected) or len(lines) != count:
        return False
    last_rowid = 0
    for line, posting in zip(lines, expected):
        rowid, *fields = line.split(",")
        if fields != [posting.book, posting.account, str(posting.amount_fen)] or int(rowid) <= last_rowid:
            return False  # another posting, or not in insert order (the order the hash covers)
        last_rowid = int(rowid)
    # the rules' postings balance per book by construction (settlement_postings checks it)
    return entry_hash(prev_hash, entry_no, setl_id, kind, setlym, created_us, expected) == stored_hash


def _verify_rows_since(store: ClearingLedger, start: Starts, up_to_entry_no: int, log: BreakLog,
                       progress: Progress | None) -> int:
    """verify_since on JournalRows, chain by chain (several writers' chains on PostgreSQL)."""
    # chain -> its last entry so far, from its checkpoint (one chain, 0, on SQLite)
    tails = {chain: start.after(chain) for chain in start.checkpoints} or {0: start.after(0)}
    seen = 0
    for row in store.entries_since(start):
        if row.entry_no > up_to_entry_no:
            continue  # appended after this run's snapshot began
        last_no, expected_prev = tails.get(row.chain) or start.after(row.chain)
        # a chain of several writers has gaps in its numbers: its hash links alone show a removed entry
        problems = entry_problems(row, expected_prev, last_no + 1 if row.chain == 0 else None)
        if problems:
            log.add(_entry_break(row, problems))
        tails[row.chain] = (row.entry_no, row.hash)
        seen += 1
        if progress is not None and seen % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    # several writers' chains (PostgreSQL): each must end where its writer recorded it
    for bad in chain_head_problems(store.chain_heads(), {chain: tail for chain, tail in tails.items() if chain}):
        log.add(Break("journal_entry", f"entry {bad.entry_no}", 0, bad.problem))
    if progress is not None:
        progress(seen % PROGRESS_EVERY)
    return seen


def missing_entry_breaks(store: ClearingLedger, start: Starts, up_to_setl_no: int) -> list[Break]:
    """Settlements since the checkpoint that have no journal entry."""
    return [Break("missing_entry", setl_id, 0, f"settlement {setl_id} has no journal entry")
            for setl_id in store.settlements_without_entry(start.setl_no, up_to_setl_no, MAX_LISTED_BREAKS_PER_KIND)]


def _entry_break(row: JournalRow, problems: list[str]) -> Break:
    """One break per bad entry; for a settlement whose postings differ from
    its amounts, by how much, account by account."""
    where = f"entry {row.entry_no} ({row.setl_id})"
    differences: dict[tuple[str, str], int] = {}
    if (row.kind in SETTLEMENT_KINDS and row.settlement is not None and settlement_well_typed(row.settlement)
            and all(posting_well_typed(Posting(*p)) for p in row.postings)):
        expected: dict[tuple[str, str], int] = defaultdict(int)
        for posting in settlement_postings(*row.settlement):
            expected[(posting.book, posting.account)] += posting.amount_fen
        actual: dict[tuple[str, str], int] = defaultdict(int)
        for book, account, amount in row.postings:
            actual[(book, account)] += amount
        differences = {key: actual[key] - expected[key] for key in set(actual) | set(expected)
                       if actual[key] != expected[key]}
    detail = "; ".join(problems)
    if differences:
        detail += " (" + ", ".join(f"{book} {account} off by {diff} fen"
                                   for (book, account), diff in sorted(differences.items())) + ")"
    amount = max((abs(d) for d in differences.values()), default=0)
    return Break("journal_entry", where, amount, f"{where}: {detail}")


def misfiled_breaks(balances: Mapping[tuple[str, str], int], differences: Mapping[tuple[str, str], int],
                    elsewhere: int, province: str, start: Starts) -> list[Break]:
    """A posting's period is not covered by its entry's hash: postings since
    the checkpoint filed in another period than their entry (or with no
    entry) break the province's balances by posting period against those by
    entry period; such postings of other periods are counted as one break."""
    breaks = []
    for key in sorted(differences):
        if not (in_province(key[0], province) or key[0] == accounts.province_book(province)) or not differences[key]:
            continue
        by_posting = balances.get(key, 0)
        breaks.append(Break("posting_period", f"{key[0]} {key[1]}", differences[key],
                            f"{key[0]} {key[1]}: the period's postings sum to {by_posting} fen, "
                            f"the period's entries to {by_posting - differences[key]} fen"))
    if elsewhere:
        since = f"after entry {start.entry_no}" if set(start.checkpoints) <= {0} else "after the chains' checkpoints"
        breaks.append(Break("posting_period", since, 0,
                            f"{elsewhere} posting(s) {since} are filed in another period than "
                            "their entry's, or belong to no entry (other periods)"))
    return breaks


def settlement_posting_breaks(groups: Iterable[SettlementGroup], settled: Mapping[tuple[str, str], int],
                              province: str) -> list[Break]:
    """The period's postings of settlement entries in the province's books,
    account by account, against what the posting rules make of the period's
    settlements summed per payee and place (the rules are linear in the
    amounts): any settlement whose postings differ from its amounts breaks
    its accounts here, before or after the checkpoint."""
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for g in groups:
        for posting in settlement_postings(g.insurance, g.treatment, g.payee_code, g.hifp_pay_fen, g.acct_pay_fen):
            if in_province(posting.book, province):
                expected[(posting.book, posting.account)] += posting.amount_fen
    breaks = []
    for key in sorted(set(expected) | {k for k in settled if in_province(k[0], province)}):
        held, posted = settled.get(key, 0), expected.get(key, 0)
        if held != posted:
            breaks.append(Break("settlement_postings", f"{key[0]} {key[1]}", held - posted,
                                f"{key[0]} {key[1]}: the period's settlements post {posted} fen, "
                                f"its settlement entries hold {held} fen"))
    return breaks


def institution_totals(groups: Iterable[SettlementGroup], province: str) -> list[InstitutionTotals]:
    """Each payee's totals per treatment-place agency of the province, in
    (payee, agency) order (the groups come sorted by the database)."""
    totals: dict[tuple[str, str], list[int]] = {}
    for g in groups:
        if not in_province(g.treatment, province):
            continue
        row = totals.setdefault((g.payee_code, g.treatment), [0, 0, 0, 0, 0, 0])
        for i, value in enumerate((g.setl_cnt, g.medfee_sumamt_fen, g.fund_pay_sumamt_fen, g.acct_pay_fen,
                                   g.psn_cash_pay_fen, g.hifp_pay_fen + g.acct_pay_fen)):
            row[i] += value
    return [InstitutionTotals(code, agency, *values) for (code, agency), values in sorted(totals.items())]


def subtract(balances: Mapping[tuple[str, str], int], part: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """balances - part, account by account."""
    result = dict(balances)
    for key, amount in part.items():
        result[key] = result.get(key, 0) - amount
    return result


def agency_pairs(balances: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The receivable/payable:agency accounts of the balances."""
    return {key: amount for key, amount in balances.items() if key[1].startswith((RECEIVABLE, PAYABLE))}


def in_province_books(balances: Mapping[tuple[str, str], int], province: str) -> dict[tuple[str, str], int]:
    """The accounts of the province's agency books and of its provincial book."""
    book = accounts.province_book(province)
    return {key: amount for key, amount in balances.items() if in_province(key[0], province) or key[0] == book}


# ---- balances --------------------------------------------------------------
def book_breaks(province_balances: Mapping[tuple[str, str], int],
                agency_balances: Mapping[tuple[str, str], int], province: str) -> list[Break]:
    """Trial balance of the province's books; reciprocal pairs with a side in it."""
    pairs_here = {
        (book, account): amount for (book, account), amount in agency_balances.items()
        if in_province(book, province) or in_province(_counterparty(account), province)
    }
    return trial_balance_breaks(province_balances) + reciprocity_breaks(pairs_here)


def reciprocal_balances(province_balances: Mapping[tuple[str, str], int], province: str) -> list[ReciprocalBalance]:
    """The period's reciprocal balances as the province's own books hold them:
    a treatment agency's receivable, or (for a treatment agency elsewhere) the
    insurance agency's payable."""
    found = []
    for (book, account), amount in sorted(province_balances.items()):
        if book.startswith("province:") or amount == 0:
            continue
        if account.startswith(RECEIVABLE):
            found.append(ReciprocalBalance(book, account[len(RECEIVABLE):], amount))
        elif account.startswith(PAYABLE) and not in_province(account[len(PAYABLE):], province):
            found.append(ReciprocalBalance(account[len(PAYABLE):], book, -amount))
    return found


def institution_breaks(totals: Iterable[InstitutionTotals], province_balances: Mapping[tuple[str, str], int],
                       log: BreakLog) -> list[InstitutionTotals]:
    """Each institution's settlement totals against its payable account."""
    kept = []
    matched: set[tuple[str, str]] = set()
    for item in totals:
        key = (item.agency, accounts.payable_institution(item.fixmedins_code))
        matched.add(key)
        booked_fen = -province_balances.get(key, 0)
        if booked_fen != item.payable_fen:
            log.add(Break("institution_payable", f"{item.agency} {key[1]}", booked_fen - item.payable_fen,
                          f"{item.fixmedins_code}: settlements owe it {item.payable_fen} fen, "
                          f"{item.agency}'s {key[1]} says {booked_fen} fen"))
        kept.append(item)
    for key, amount in sorted(province_balances.items()):
        if key[1].startswith(PAYABLE_INSTITUTION) and key not in matched and amount != 0:
            log.add(Break("institution_payable", f"{key[0]} {key[1]}", -amount,
                          f"{key[0]}'s {key[1]} is {-amount} fen with no settlement of the period behind it"))
    return kept


def _counterparty(account: str) -> str:
    for prefix in (RECEIVABLE, PAYABLE):
        if account.startswith(prefix):
            return account[len(prefix):]
    return ""


# ---- declared totals (3201 / 3203) ----------------------------------------
@dataclass(frozen=True, slots=True)
class DeclaredRow:
    fixmedins_code: str
    clr_type: int
    totals: Totals


def read_declared(path: str | Path) -> list[DeclaredRow]:
    """Reads the institution-declared totals; a bad file is refused whole,
    naming the line and the column."""
    rows: list[DeclaredRow] = []
    seen: set[tuple[str, int]] = set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or sorted(reader.fieldnames) != sorted(DECLARED_COLUMNS):
            raise ClearingRefused(f"--declared {path}: the header must be {','.join(DECLARED_COLUMNS)}, "
                                  f"got {','.join(reader.fieldnames or [])}")
        for record in reader:
            line = reader.line_num
            if len(rows) >= MAX_DECLARED_ROWS:
                raise ClearingRefused(f"--declared {path}: more than {MAX_DECLARED_ROWS} rows")
            code = record["fixmedins_code"] or ""
            if not INSTITUTION_CODE.match(code):
                raise ClearingRefused(f"--declared line {line}: fixmedins_code {code!r} is not an institution code")
            values = {name: _declared_int(record, name, line) for name in DECLARED_COLUMNS[1:]}
            if values["clr_type"] not in {int(c) for c in ClrType}:
                raise ClearingRefused(f"--declared line {line}: clr_type must be one of 11, 21, 41")
            key = (code, values["clr_type"])
            if key in seen:
                raise ClearingRefused(f"--declared line {line}: {code} clr_type {key[1]} is declared twice")
            seen.add(key)
            rows.append(DeclaredRow(code, values.pop("clr_type"), Totals(**values)))
    return rows


def _declared_int(record: Mapping[str, str | None], name: str, line: int) -> int:
    text = (record.get(name) or "").strip()
    if not re.fullmatch(r"-?[0-9]{1,15}", text) or abs(int(text)) > MAX_AMOUNT_FEN:
        raise ClearingRefused(f"--declared line {line}: {name} must be an integer (fen) within "
                              f"±{MAX_AMOUNT_FEN}, got {text!r}")
    return int(text)


def compare_declared(store: ClearingLedger, period: str, declared: list[DeclaredRow],
                     institutions: Iterable[InstitutionTotals], log: BreakLog) -> list[DeclaredResult]:
    """The 0/1/2/3 result per declared row; institutions with records in the
    period that declared nothing are compared with zeros (platform has more)."""
    wanted = {(row.fixmedins_code, row.clr_type): row.totals for row in declared}
    for item in institutions:
        for clr_type in ClrType:
            key = (item.fixmedins_code, int(clr_type))
            if key not in wanted and store.period_totals(key[0], period, key[1])[0]:
                wanted[key] = Totals(0, 0, 0, 0, 0)
    results = []
    for (code, clr_type), declared_totals in sorted(wanted.items()):
        platform = Totals(*store.period_totals(code, period, clr_type))
        result = compare_totals(platform, declared_totals)
        listed: tuple[tuple[str, str, int, int], ...] = ()
        if result != StmtResult.BALANCED:
            page = store.list_settlements_page(code, period, clr_type, 0, MAX_LISTED_SETTLEMENTS)
            listed = tuple((s.setl_id, s.msgid, s.split.medfee_sumamt_fen, s.split.fund_pay_sumamt_fen)
                           for _, s in page)
            log.add(Break(
                "declared_totals", f"{code} clr_type {clr_type}",
                platform.fund_pay_sumamt_fen - declared_totals.fund_pay_sumamt_fen,
                f"{code} clr_type {clr_type}: stmt_rslt {int(result)} ({result.name.lower()}): platform "
                f"{platform.setl_cnt} records, {platform.medfee_sumamt_fen} fen; institution "
                f"{declared_totals.setl_cnt} records, {declared_totals.medfee_sumamt_fen} fen",
            ))
        results.append(DeclaredResult(code, clr_type, result, platform, declared_totals, listed))
    return results

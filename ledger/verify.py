"""Tamper evidence: re-walk the journal from the first entry, recompute each
entry's hash from its stored postings and the previous entry's hash, check
that each entry balances per book and matches its settlement row, and
re-derive every balance. The first bad entry is what an auditor needs: from
there on, the journal is no longer what the service wrote."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from medsettle.ledger.chain_checkpoint import FROM_THE_START, Checkpoint, Starts, next_checkpoint, trusted_starts
from medsettle.ledger.clock import SystemClock
from medsettle.ledger.posting.invariants import Break, reciprocity_breaks, trial_balance_breaks
from medsettle.ledger.posting.journal import GENESIS_HASH, entry_hash
from medsettle.ledger.posting.rules import Posting, settlement_postings
from medsettle.ledger.progress import NO_PROGRESS, Hooks, counted
from medsettle.ledger.storage.backends import is_postgres
from medsettle.ledger.storage.rows import JournalRow, to_us

if TYPE_CHECKING:
    from medsettle.ledger.clearing.port import ClearingLedger

SETTLEMENT_KINDS = ("settle", "reverse")
MAX_LISTED_MISSING = 200  # settlements without an entry listed (since a checkpoint)


@dataclass(frozen=True, slots=True)
class BadEntry:
    entry_no: int
    setl_id: str
    problem: str


@dataclass
class VerifyReport:
    entries: int = 0
    postings: int = 0
    bad_entries: list[BadEntry] = field(default_factory=list)  # in journal order
    balance_breaks: list[Break] = field(default_factory=list)
    orphan_postings: int = 0
    head_hash: str = GENESIS_HASH
    # chain -> (last entry number, last hash) as walked (one chain, 0, on SQLite)
    chain_tails: dict[int, tuple[int, str]] = field(default_factory=dict)
    # chain -> the checkpointed entry after which its entries were checked (empty: every entry was)
    since: dict[int, int] = field(default_factory=dict)
    checkpoint_problems: list[str] = field(default_factory=list)
    missing_entries: list[str] = field(default_factory=list)  # settlements without an entry (after the start)
    recorded: list[Checkpoint] = field(default_factory=list)  # the checkpoints this run recorded

    @property
    def ok(self) -> bool:
        return not (self.bad_entries or self.balance_breaks or self.orphan_postings or self.checkpoint_problems
                    or self.missing_entries)

    @property
    def first_bad(self) -> BadEntry | None:
        return self.bad_entries[0] if self.bad_entries else None

    @property
    def since_entry_no(self) -> int:
        """The newest checkpointed entry the check continued from (0: every entry was checked)."""
        return max(self.since.values(), default=0)


def entry_problems(row: JournalRow, expected_prev: str, expected_no: int | None) -> list[str]:
    """What is wrong with one entry, given the previous entry's stored hash
    (expected_no None: a chain whose numbers have gaps, where the hash links
    alone show a removed entry)."""
    problems = []
    postings = [Posting(book, account, amount) for book, account, amount in row.postings]
    if expected_no is not None and row.entry_no != expected_no:
        problems.append(f"entry number {row.entry_no} follows {expected_no - 1}: entries are missing")
    if row.prev_hash != expected_prev:
        problems.append("prev_hash is not the previous entry's hash (an entry was removed, inserted or reordered)")
    if entry_hash(row.prev_hash, row.entry_no, row.setl_id, row.kind, row.setlym, row.created_us, postings) != row.hash:
        problems.append("hash does not match the entry's postings (a posting or the entry was changed)")
    if not all(posting_well_typed(p) for p in postings):
        problems.append("a posting's book, account or amount is not text, text and an integer")
        return problems  # its sums would mean nothing
    per_book: dict[str, int] = defaultdict(int)
    for p in postings:
        per_book[p.book] += p.amount_fen
    unbalanced = sorted(book for book, total in per_book.items() if total)
    if unbalanced:
        problems.append(f"postings do not sum to zero in book(s) {', '.join(unbalanced)}")
    if row.kind in SETTLEMENT_KINDS:
        if row.settlement is None:
            problems.append(f"no settlement row {row.setl_id} for this {row.kind} entry")
        elif not settlement_well_typed(row.settlement):
            problems.append(f"settlement {row.setl_id}'s places, payee or amounts are not text and integers")
        elif settlement_postings(*row.settlement) != postings:
            problems.append(f"postings differ from what settlement {row.setl_id}'s amounts post")
    return problems


def well_typed(texts: Iterable[object], integers: Iterable[object]) -> bool:
    """True if these are text and those integers (a posting's book and
    account, and amount; a settlement's places and payee, and amounts): what
    a file changed behind the service's back holds instead is reported, not
    summed."""
    return all(isinstance(value, str) for value in texts) and all(type(value) is int for value in integers)


def posting_well_typed(posting: Posting) -> bool:
    return well_typed((posting.book, posting.account), (posting.amount_fen,))


def settlement_well_typed(settlement: tuple[object, ...]) -> bool:
    return well_typed(settlement[:3], settlement[3:])


def verify_journal(rows: Iterable[JournalRow], start: Starts = FROM_THE_START,
                   ) -> tuple[VerifyReport, dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(report, balances of all postings, balances of settlement postings), in
    one pass over the entries after `start` (FROM_THE_START: all of them;
    else each chain continues from its checkpoint)."""
    report = VerifyReport(since={chain: cp.entry_no for chain, cp in start.checkpoints.items()})
    for chain, checkpoint in start.checkpoints.items():
        report.chain_tails[chain] = (checkpoint.entry_no, checkpoint.entry_hash)
    if start.checkpoints:
        report.head_hash = max(start.checkpoints.values(), key=lambda checkpoint: checkpoint.entry_no).entry_hash
    balances: dict[tuple[str, str], int] = defaultdict(int)
    settled: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        report.entries += 1
        report.postings += len(row.postings)
        last_no, expected_prev = report.chain_tails.get(row.chain, (0, GENESIS_HASH))
        expected_no = last_no + 1 if row.chain == 0 else None
        for problem in entry_problems(row, expected_prev, expected_no):
            report.bad_entries.append(BadEntry(row.entry_no, row.setl_id, problem))
        for book, account, amount in row.postings:
            balances[(book, account)] += amount
            if row.kind in SETTLEMENT_KINDS:
                settled[(book, account)] += amount
        # Chain on from the stored hash, so one changed entry is reported once.
        report.chain_tails[row.chain] = (row.entry_no, row.hash)
        report.head_hash = row.hash
    return report, dict(balances), dict(settled)


def chain_head_problems(heads: dict[int, tuple[int, str]], tails: dict[int, tuple[int, str]]) -> list[BadEntry]:
    """Where several writers keep a chain each (PostgreSQL), each writer's
    recorded head must be where its chain ends: entries removed from the end
    of a chain, or a whole chain removed, show here."""
    bad = []
    for chain, (last_no, last_hash) in sorted(heads.items()):
        tail = tails.get(chain, (0, GENESIS_HASH))
        if tail != (last_no, last_hash):
            bad.append(BadEntry(tail[0], "", f"chain {chain} ends at entry {tail[0]} but its writer recorded entry "
                                            f"{last_no} as its last: entries at its end were removed or changed"))
    for chain in sorted(set(tails) - set(heads) - {0}):
        bad.append(BadEntry(tails[chain][0], "", f"chain {chain} has entries but no recorded writer head"))
    return bad


def verify_database(path: str | Path, hooks: Hooks = NO_PROGRESS, *, since_checkpoint: bool = False,
                    record_checkpoint: bool = False) -> VerifyReport:
    """The whole journal, or (since_checkpoint) each hash chain's entries
    after its newest checkpoint, the checkpoints being intact
    (ledger/chain_checkpoint.py); record_checkpoint: when it all verifies,
    record a checkpoint at the last entry checked of each chain that grew.
    hooks hear of the entries to check and of those checked."""
    store = _reads_of(path)
    try:
        with store.snapshot():  # every read below sees one state of the ledger (servers may be writing)
            start, checkpoint_problems = FROM_THE_START, []
            if since_checkpoint:
                start, checkpoint_problems = trusted_starts(store.chain_checkpoints(), store.chain_entry_hash)
            head_entry_no, _, head_setl_no = store.journal_head()
            hooks.start(store.count_entries_since(start, head_entry_no))
            report, balances, settled = verify_journal(counted(store.entries_since(start), hooks), start)
            report.checkpoint_problems = checkpoint_problems
            report.bad_entries += chain_head_problems(store.chain_heads(), report.chain_tails)
            # postings of no entry: every one on the whole walk; after the lowest
            # checkpointed entry from checkpoints (clearing looks there too)
            report.orphan_postings = store.orphan_postings(
                min(c.entry_no for c in start.checkpoints.values()) if start.checkpoints else None)
            # a settlement whose entry is gone whole leaves a chain that still hashes and balances
            report.missing_entries = store.settlements_without_entry(start.setl_no, head_setl_no, MAX_LISTED_MISSING)
    finally:
        store.close()
    # Pairs are compared on settlement postings: one province's clearing
    # zeroes its side of a cross-province pair before the other's does.
    report.balance_breaks = trial_balance_breaks(balances) + reciprocity_breaks(settled)
    if record_checkpoint and report.ok:
        report.recorded = record_verified(path, start, report.chain_tails, head_setl_no, to_us(SystemClock().now()))
    return report


def _reads_of(path: str | Path) -> ClearingLedger:
    """A read-only store of the ledger whose snapshot() makes its reads one
    state of it: on PostgreSQL servers append to their chains during a walk,
    and the chains walked and their writers' recorded heads must be read in
    one snapshot, else a clean ledger looks cut (a head read later is past
    its chain's end). NotALedgerError if it holds no ledger."""
    return _clearing_store(path, read_only=True)


def _clearing_store(path: str | Path, *, read_only: bool = False) -> ClearingLedger:
    if is_postgres(path):
        from medsettle.ledger.clearing.postgres_store import PostgresClearingStore

        return PostgresClearingStore(str(path), read_only=read_only)  # type: ignore[no-any-return]
    from medsettle.ledger.clearing.store import ClearingStore

    return ClearingStore(path, read_only=read_only)


def append_checkpoint(store: LedgerStore, entry_no: int, entry_hash: str, setl_no: int,
                      verified_us: int, chain: int = 0) -> Checkpoint | None:
    """Inside the store's open write transaction: appends the checkpoint after
    the chain's newest one, unless one at or after entry_no was recorded
    meanwhile (None then)."""
    checkpoints = [checkpoint for checkpoint in store.chain_checkpoints() if checkpoint.chain == chain]
    if checkpoints and checkpoints[-1].entry_no >= entry_no:
        return None
    checkpoint = next_checkpoint(checkpoints[-1] if checkpoints else None, entry_no, entry_hash, setl_no, verified_us,
                                 chain)
    store.record_chain_checkpoint(checkpoint)
    return checkpoint


def append_checkpoints(store: LedgerStore, start: Starts, chain_ends: dict[int, tuple[int, str]], setl_no: int,
                       verified_us: int) -> list[Checkpoint]:
    """After a clean check from `start` to `chain_ends` (chain -> its last
    entry and hash), a checkpoint at the end of each chain that grew."""
    recorded = []
    for chain, (entry_no, entry_hash) in sorted(chain_ends.items()):
        if entry_no > start.after(chain)[0]:
            checkpoint = append_checkpoint(store, entry_no, entry_hash, setl_no, verified_us, chain)
            if checkpoint is not None:
                recorded.append(checkpoint)
    return recorded


def record_verified(db: str | Path, start: Starts, chain_ends: dict[int, tuple[int, str]], setl_no: int,
                    verified_us: int) -> list[Checkpoint]:
    """append_checkpoints in a transaction of its own (checkpointing(): on
    PostgreSQL one that opens no hash chain and appends under the lock
    clearing appends under)."""
    store = _clearing_store(db)
    try:
        with store.checkpointing():
            return append_checkpoints(store, start, chain_ends, setl_no, verified_us)
    finally:
        store.close()

"""What the clearing run needs of a ledger, whatever database holds it
(ledger/clearing/store.py is the SQLite implementation). Every month-wide
read is an aggregate the database computes; only the entries since the
newest checkpoint are streamed one by one.

A backend shared by several machines (PostgreSQL) must also make the
posting transaction exclusive per (province, period): `run_exists` is read
under that exclusion, so two runs of one month never both post."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterable, Iterator, Protocol

from medsettle.ledger.chain_checkpoint import Checkpoint, Starts
from medsettle.ledger.clearing.month_sums import MonthSums
from medsettle.ledger.clearing.store import ClearingRun, EntryText, SettlementGroup
from medsettle.ledger.posting.rules import Posting
from medsettle.ledger.settlement.model import Settlement
from medsettle.ledger.storage.rows import JournalRow

Balances = dict[tuple[str, str], int]  # (book, account) -> fen


class ClearingLedger(Protocol):
    read_only: bool
    keeps_checkpoints: bool  # a clean run records a checkpoint on each chain it checked

    # ---- reads, inside snapshot() ---------------------------------------
    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Every read inside sees one consistent state of the ledger."""
    def journal_head(self) -> tuple[int, str, int]: ...
    def chain_checkpoints(self) -> list[Checkpoint]:
        """Every chain's checkpoints, sorted by (chain, entry_no)."""
    def entry_hash(self, entry_no: int) -> str | None: ...
    def chain_entry_hash(self, chain: int, entry_no: int) -> str | None:
        """The stored hash of that chain's entry (None: the chain has no such entry)."""
    def chain_heads(self) -> dict[int, tuple[int, str]]:
        """Each writer's recorded (last entry, hash) where there are several chains; {} for one."""
    def iter_entry_postings(self, setlym: str | None = None, after_entry_no: int = 0) -> Iterator[JournalRow]: ...
    def entries_since(self, start: Starts) -> Iterator[JournalRow]:
        """Every entry after its chain's checkpoint, chain by chain, each in order."""
    def count_entries_since(self, start: Starts, up_to_entry_no: int) -> int:
        """How many entries entries_since yields (up to the snapshot's last entry)."""
    def entry_texts_since(self, after_entry_no: int) -> Iterable[EntryText] | None:
        """One row per entry with its postings as text (store.py); None: the
        backend has no such read, the entries are read with iter_entry_postings."""
    def settlements_without_entry(self, after_setl_no: int, up_to_setl_no: int, limit: int) -> list[str]: ...
    def month_sums(self, period: str, province: str) -> MonthSums:
        """The period's balances and settlement groups (ledger/clearing/month_sums.py)."""
    def period_balances(self, period: str) -> Balances: ...
    def non_settlement_balances(self, period: str) -> Balances: ...
    def misfiled_since(self, period: str, start: Starts) -> tuple[Balances, int]: ...
    def settlement_groups(self, period: str, province: str) -> list[SettlementGroup]: ...
    def prepaid_balances(self, province: str) -> dict[str, int]: ...
    def period_totals(self, fixmedins_code: str, setlym: str, clr_type: int) -> tuple[int, int, int, int, int]: ...
    def list_settlements_page(self, fixmedins_code: str, setlym: str, clr_type: int, after_setl_no: int,
                              page_size: int) -> list[tuple[int, Settlement]]: ...
    def find_run(self, province: str, period: str) -> ClearingRun | None: ...
    def period_mark(self, period: str) -> int:
        """What period_appended_since compares with, read in the snapshot."""

    # ---- the posting transaction: all of it commits, or nothing ---------
    def posting(self) -> contextlib.AbstractContextManager[None]: ...
    def run_exists(self, province: str, period: str) -> bool: ...
    def period_appended_since(self, period: str, mark: int) -> bool: ...
    def append_entry(self, setl_id: str, kind: str, setlym: str, at: dt.datetime,
                     postings: list[Posting]) -> tuple[int, str]: ...
    def record_run(self, run: ClearingRun) -> None: ...
    def record_chain_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    # ---- `medsettle verify` ----------------------------------------------
    def orphan_postings(self, after_entry_no: int | None = None) -> int: ...
    def checkpointing(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction in which checkpoints are appended (and nothing
        else): two appenders of one chain's checkpoints take turns."""
    def close(self) -> None: ...

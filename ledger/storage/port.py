"""The storage port: what the settlement use case, the service layer and
the read commands need of a ledger, whatever database holds it.

The settlement processor (ledger/settlement/process.py) runs one batch as
one transaction: `begin()`, the reads and `insert_batch()` of that batch,
then `commit()` or `rollback()`. Each backend (ledger/storage/sqlite.py,
ledger/storage/postgres.py) implements `LedgerStore`; one contract test
suite (tests/contract/) runs against every backend.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from medsettle.ledger.reference.internet import Agreement
from medsettle.ledger.chain_checkpoint import Checkpoint
from medsettle.ledger.reference.models import Person
# PersonState lives with the values the compiled core builds per settlement; named here as the port's.
from medsettle.ledger.settlement.model import PersonState, Settlement
from medsettle.ledger.settlement.prescriptions import RxRecord
from medsettle.ledger.storage.rows import JournalRow

# A batch that meets another writer's change is run again this many times
# at most, then answered STORAGE_UNAVAILABLE ("retry with the same msgid").
MAX_BATCH_ATTEMPTS = 5


class StorageError(Exception):
    """The database refused a write or a read (disk full, locked, I/O error,
    connection lost). Nothing of the open transaction is kept."""


class WriteConflict(StorageError):
    """Another writer changed what this batch read: an idempotency key taken
    meanwhile, a serialization failure, a deadlock. The transaction is
    rolled back; running the whole batch again is safe and gives the answer
    a lone writer would have given."""


class NotALedgerError(Exception):
    """A ledger opened read only is missing or holds no medsettle ledger."""


@dataclass(slots=True)
class BatchWrite:
    """Everything one group commit writes to the journal and the persons."""

    settlements: list[tuple[Any, ...]] = field(default_factory=list)  # rows.settlement_row
    entries: list[tuple[Any, ...]] = field(default_factory=list)  # entry_no, setl_id, kind, setlym, created_us, prev_hash, hash
    postings: list[tuple[Any, ...]] = field(default_factory=list)  # entry_no, setlym, book, account, amount_fen
    persons: dict[str, PersonState] = field(default_factory=dict)  # state after the batch
    touched_years: set[tuple[str, int]] = field(default_factory=set)  # (psn_no, year) rows to write


@dataclass(slots=True)
class InternetWrite:
    """What one batch writes of the "Internet+" and supervision state."""

    quota_used: dict[tuple[str, int], int] = field(default_factory=dict)  # (host, year) -> used after
    rx_fills: list[tuple[str, str, str, str, int]] = field(default_factory=list)  # setl_id, prescriber, rx, pharmacy, us
    rx_releases: list[tuple[str, str]] = field(default_factory=list)  # (reversal setl_id, filled setl_id)
    nonces: list[tuple[str, int, int]] = field(default_factory=list)
    # setl_id, psn_no, day, institution, visit_type, diag_code, rx_id, item codes, line facts, pharmacist_id
    visits: list[tuple[Any, ...]] = field(default_factory=list)
    flags: list[tuple[Any, ...]] = field(default_factory=list)
    rx_issued: list[RxRecord] = field(default_factory=list)  # e-prescriptions issued with a visit
    # what a sale took from a recorded prescription: setl_id, prescriber, rx, hilist_code, cnt, pharmacist_id
    rx_fill_items: list[tuple[str, str, str, str, int, str]] = field(default_factory=list)
    rx_item_releases: list[tuple[str, str]] = field(default_factory=list)  # (reversal setl_id, sale setl_id)
    rx_voids: list[tuple[str, str]] = field(default_factory=list)  # (reversal setl_id, issuing visit setl_id)

    def empty(self) -> bool:
        return not (self.quota_used or self.rx_fills or self.rx_releases or self.nonces or self.visits or self.flags
                    or self.rx_issued or self.rx_fill_items or self.rx_item_releases or self.rx_voids)


class InternetState(Protocol):
    """The "Internet+" and fund-supervision state, read and written inside
    the settlement batch's transaction."""

    def quota_used(self, host_code: str, year: int) -> int: ...
    def rx_filled_by(self, prescribing_code: str, rx_id: str) -> str | None: ...
    def rx_fill_of(self, setl_id: str) -> bool: ...
    def nonce_seen(self, nonce: str) -> bool: ...
    # recorded e-prescriptions (tables prescriptions, rx_fill_items)
    def rx_record(self, prescribing_code: str, rx_id: str) -> RxRecord | None: ...
    def rx_filled(self, prescribing_code: str, rx_id: str) -> dict[str, int]:
        """hilist_code -> quantity the prescription's live (not reversed) fills took."""
    def rx_fill_items_of(self, setl_id: str) -> list[tuple[str, str, str, int]]:
        """(prescriber, rx_id, hilist_code, cnt) a live sale took from a recorded prescription."""
    def rx_issued_by(self, setl_id: str) -> tuple[str, str] | None:
        """(prescriber, rx_id) of the prescription a visit issued, if any."""
    # internet-hospital agreements an operator added or changed (table internet_agreements)
    def agreements_of(self, internet_codes: list[str]) -> list[Agreement]:
        """Those of these internet hospitals; every one stored when the list is empty."""
    def save_agreement(self, agreement: Agreement, changed_us: int) -> None:
        """Adds an agreement, or replaces the one of the same agreement_no."""
    def day_visits(self, psn_nos: list[str], day: str) -> dict[str, tuple[int, set[str]]]: ...
    def offline_visit_since(self, psn_no: str, diag_category: str, since_day: str) -> bool: ...
    def quota_uses(self) -> dict[tuple[str, int], int]: ...
    def prune_nonces(self, expired_before_us: int) -> None: ...
    def write(self, batch: InternetWrite) -> None: ...


class LedgerStore(Protocol):
    """A ledger: the journal, the persons' state and the reads of them."""

    # True when this process is the ledger's only writer of settlements: the
    # processor may then keep person state, quota use and day activity in
    # memory across batches. False where several servers write one ledger:
    # each batch reads them inside its transaction (and the backend locks them).
    sole_writer: bool
    read_only: bool

    def close(self) -> None: ...
    def unreachable(self) -> str | None:
        """Why the database cannot be reached now (health says NOT_SERVING
        meanwhile), or None. Blocks for at most about a second."""

    # ---- reference data ----------------------------------------------
    def reference_body(self) -> str | None: ...
    def save_reference(self, body: str, persons: list[Person], loaded_at: dt.datetime) -> None: ...

    # ---- the writer side: one batch, one transaction ------------------
    def begin(self) -> None: ...
    def commit(self) -> None:
        """On return the transaction is durable."""
    def rollback(self) -> None: ...
    def chain_head(self) -> tuple[int, int, str]:
        """(last setl_no, last entry_no, last entry hash) that this batch continues."""
    def find_by_key(self, fixmedins_code: str, msgid: str) -> tuple[Settlement, str, str] | None: ...
    def find_by_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[Settlement, str]]: ...
    def find_by_setl_id(self, setl_id: str) -> tuple[Settlement, str, str] | None: ...
    def reversal_of(self, setl_id: str) -> str | None: ...
    def load_persons(self, psn_nos: set[str]) -> dict[str, PersonState]:
        """The stored state of each person that exists. A backend shared by
        several writers locks their rows until the batch ends."""
    def insert_batch(self, batch: BatchWrite) -> None: ...
    def internet_state(self) -> InternetState: ...

    # ---- reads (any thread) -------------------------------------------
    def get_settlement(self, fixmedins_code: str, setl_id: str = "", msgid: str = "") -> Settlement | None: ...
    def list_settlements_page(
        self, fixmedins_code: str, setlym: str, clr_type: int, after_setl_no: int, page_size: int
    ) -> list[tuple[int, Settlement]]: ...
    def period_totals(self, fixmedins_code: str, setlym: str, clr_type: int) -> tuple[int, int, int, int, int]: ...
    def book_balances(self, setlym: str | None = None) -> dict[tuple[str, str], int]: ...
    def iter_entry_postings(self, setlym: str | None = None, after_entry_no: int = 0) -> Iterator[JournalRow]: ...

    # ---- verified checkpoints of the chain (ledger/chain_checkpoint.py) ----
    def chain_checkpoints(self) -> list[Checkpoint]: ...
    def entry_hash(self, entry_no: int) -> str | None: ...
    def journal_head(self) -> tuple[int, str, int]:
        """(last entry_no, its hash, last setl_no)."""
    def settlements_without_entry(self, after_setl_no: int, up_to_setl_no: int, limit: int) -> list[str]: ...
    def record_chain_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Appends a checkpoint (in the open transaction, if any)."""
    def orphan_postings(self, after_entry_no: int | None = None) -> int: ...
    def chain_heads(self) -> dict[int, tuple[int, str]]:
        """Where a ledger keeps one hash chain per writer: chain -> (its last
        entry number, its last hash) as the writer recorded them; {} where the
        journal is one chain (its head is its last entry)."""
    def flags_of_day(self, day: str, fixmedins_code: str = "", after_flag_no: int = 0,
                     limit: int = -1) -> list[dict[str, Any]]: ...

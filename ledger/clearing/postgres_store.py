"""The clearing run on a PostgreSQL ledger (the ClearingLedger of
ledger/clearing/port.py). ClearingStore's SQL where it is portable; here
what differs:

- the reads run in ONE REPEATABLE READ transaction on a connection of their
  own (the pooled reader would put each statement on another connection,
  each seeing other commits: no consistent month);
- no checkpoint: the ledger has one hash chain per writing server, which a
  checkpoint (one chain) does not cover, so every entry is checked, chain by
  chain, as `medsettle verify` does;
- the clearing entry is appended on this process's own chain, like any
  writer's batch (PostgresLedgerStore.begin/chain_head/insert_batch);
- one run per (province, period) across all machines: the posting
  transaction takes a transaction-level advisory lock on the pair before it
  looks for an earlier run; the clearing_runs primary key is the backstop;
- "appended since the snapshot" is counted, not compared by number: entry
  numbers come in blocks per batch and commit out of order.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from medsettle.ledger.chain_checkpoint import Checkpoint
from medsettle.ledger.clearing.month_sums import SnapshotMonthSums
from medsettle.ledger.storage import pg_connect
from medsettle.ledger.storage.port import StorageError
from medsettle.ledger.storage.postgres import (
    PostgresClearingReads,
    QmarkConnection,
    entries_query,
    journal_rows,
    pg_errors_as_storage,
)
from medsettle.ledger.storage.rows import JournalRow

CLEARING_LOCK_CLASS = 0x636C  # advisory lock class of a clearing run (province, period)
ENTRIES_FETCH = 10_000  # rows per round trip of the streamed journal


class PostgresClearingStore(PostgresClearingReads):  # type: ignore[misc,valid-type]
    keeps_checkpoints = False

    def __init__(self, url: str, *, read_only: bool = False) -> None:  # noqa: D107
        super().__init__(url, read_only=read_only)
        self._snapshot: QmarkConnection | None = None

    # ---- the read snapshot ------------------------------------------
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside runs in one REPEATABLE READ transaction."""
        try:
            conn = pg_connect.connect(self.url, autocommit=True)
        except pg_connect.DatabaseConnectError as error:
            raise StorageError(str(error)) from None
        try:
            with pg_errors_as_storage:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._snapshot = QmarkConnection(conn)
            yield
        finally:
            self._snapshot = None
            conn.close()  # ends the read-only transaction

    def reader(self) -> Any:
        """The snapshot's connection inside snapshot(); the posting
        transaction's inside posting() (so the prepaid funds are read under
        its lock); otherwise the pool."""
        if self._snapshot is not None:
            return self._snapshot
        if self._in_batch:
            return self._write
        return super().reader()

    def iter_entry_postings(self, setlym: str | None = None, after_entry_no: int = 0) -> Iterator[JournalRow]:
        """Every entry, chain by chain (no checkpoint: after_entry_no must be 0),
        streamed through a server-side cursor of the snapshot, so other reads
        may run on its connection meanwhile."""
        if after_entry_no:
            raise ValueError("a PostgreSQL ledger keeps no checkpoint: entries are read from the start")
        if self._snapshot is None:
            yield from super().iter_entry_postings(setlym)
            return
        with pg_errors_as_storage, self._snapshot.conn.cursor(name="clearing_entries") as cursor:
            cursor.itersize = ENTRIES_FETCH
            cursor.execute(*entries_query(setlym))
            yield from journal_rows(iter(cursor))

    def month_sums(self, period: str, province: str) -> SnapshotMonthSums:
        """Read in the snapshot's one transaction, when asked (its connection serves one statement at a time)."""
        return SnapshotMonthSums(self, period, province)

    def entry_texts_since(self, after_entry_no: int) -> None:
        return None  # several chains: the entries are read chain by chain (iter_entry_postings)

    def chain_checkpoints(self) -> list[Checkpoint]:
        return []  # one chain per writer: no checkpoint covers them (the run checks every entry)

    # ---- the month in aggregates: ClearingStore's SQL without SQLite's plan hints ----
    NOT_SETTLEMENT_POSTINGS = "journal_entries j JOIN postings p ON p.entry_no = j.entry_no"
    POSTING_PERIOD = "p.setlym"
    MONTH_SCAN = "settlements"
    TEXT_ORDER = ' COLLATE "C"'  # the order SQLite sorts text in (bytes), whatever the database's collation

    def find_run(self, province: str, period: str) -> Any:
        from medsettle.ledger.clearing.store import ClearingRun

        row = self.reader().execute(
            "SELECT province, period, entry_no, cleared_us, statement_json, statement_sha256 "
            "FROM clearing_runs WHERE province = ? AND period = ?", (province, period)).fetchone()
        return ClearingRun(*row) if row else None

    # ---- the posting transaction ------------------------------------
    def period_mark(self, period: str) -> int:
        """How many entries the period has in the snapshot (entries are append-only)."""
        return int(self.reader().execute("SELECT COUNT(*) FROM journal_entries WHERE setlym = ?",
                                         (period,)).fetchone()[0])

    def period_appended_since(self, period: str, mark: int) -> bool:
        return self.period_mark(period) > mark

    def run_exists(self, province: str, period: str) -> bool:
        """Takes the (province, period) lock until the posting transaction
        ends, then looks: a second run waits here and finds the first's run."""
        self._write.execute("SELECT pg_advisory_xact_lock(?, hashtext(? || ':' || ?))",
                            (CLEARING_LOCK_CLASS, province, period))
        return self._write.execute("SELECT 1 FROM clearing_runs WHERE province = ? AND period = ?",
                                   (province, period)).fetchone() is not None

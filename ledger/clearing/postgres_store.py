"""The clearing run on a PostgreSQL ledger (the ClearingLedger of
ledger/clearing/port.py). ClearingStore's SQL where it is portable; here
what differs:

- the reads run in ONE REPEATABLE READ transaction on a connection of their
  own (the pooled reader would put each statement on another connection,
  each seeing other commits: no consistent month);
- a checkpoint per hash chain: the ledger has one chain per writer (a
  server's writer, a clearing run), so a clean run records where it checked
  each chain to, and the next run checks, chain by chain, only the entries
  after each chain's checkpoint (a chain without one from its first entry);
  the run's posting transaction takes a ledger-wide advisory lock before it
  appends them, so two provinces' runs never append to one chain's at once;
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

from psycopg import errors as pg_errors

from medsettle.ledger.chain_checkpoint import Starts
from medsettle.ledger.clearing.month_sums import SnapshotMonthSums
from medsettle.ledger.clearing.store import misfiled_differences
from medsettle.ledger.storage import pg_connect
from medsettle.ledger.storage.port import StorageError
from medsettle.ledger.storage.postgres import (
    NUMBERS_LOCK,
    PostgresClearingReads,
    QmarkConnection,
    entries_query,
    journal_rows,
    pg_errors_as_storage,
)
from medsettle.ledger.storage.rows import JournalRow

CLEARING_LOCK_CLASS = 0x636C  # advisory lock class of a clearing run (province, period)
CHECKPOINTS_LOCK = (CLEARING_LOCK_CLASS, 0)  # the checkpoints are appended under this lock
SNAPSHOT_WAIT_MS = 5_000  # the longest a snapshot waits for the batches in flight (new ones wait behind it)
ENTRIES_FETCH = 10_000  # rows per round trip of the streamed journal
# Every chain that has an entry, one index probe per chain (journal_entries_by_chain), not a scan of the journal.
ENTRY_CHAINS = """
WITH RECURSIVE chains(chain_id) AS (
    (SELECT chain_id FROM journal_entries ORDER BY chain_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.chain_id FROM journal_entries e WHERE e.chain_id > chains.chain_id ORDER BY e.chain_id LIMIT 1)
    FROM chains WHERE chains.chain_id IS NOT NULL
)
SELECT chain_id FROM chains WHERE chain_id IS NOT NULL
"""


def _wait_for_batches_in_flight(conn: Any) -> None:
    """Takes NUMBERS_LOCK: the batches in flight end first. The wait is
    bounded, as every writer's next batch waits behind it: a batch left open
    (a server stopped mid-batch) refuses the run instead of stopping them all."""
    conn.execute(f"SET lock_timeout = {int(SNAPSHOT_WAIT_MS)}")
    try:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", NUMBERS_LOCK)
    except pg_errors.LockNotAvailable:
        raise StorageError(f"a server's batch has been open for over {SNAPSHOT_WAIT_MS / 1000:g} s (a server "
                           "stopped mid-batch?): nothing was read; run again") from None
    conn.execute("RESET lock_timeout")


class PostgresClearingStore(PostgresClearingReads):  # type: ignore[misc,valid-type]
    keeps_checkpoints = True

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
                # no batch is between taking its numbers and its end as the snapshot begins
                _wait_for_batches_in_flight(conn)
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute("SELECT 1")  # the snapshot is taken here
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", NUMBERS_LOCK)
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
        """Every entry, chain by chain (entry numbers are no order across
        chains: after_entry_no must be 0; entries_since reads each chain
        after its checkpoint)."""
        if after_entry_no:
            raise ValueError("entry numbers are no order across a PostgreSQL ledger's chains: use entries_since")
        if self._snapshot is None:
            yield from super().iter_entry_postings(setlym)
            return
        yield from self._streamed(*entries_query(setlym))

    def _streamed(self, sql: str, params: tuple[Any, ...]) -> Iterator[JournalRow]:
        """entries_query's rows as JournalRows, streamed through a server-side
        cursor of the snapshot, so other reads may run on its connection meanwhile."""
        assert self._snapshot is not None, "inside snapshot()"
        with pg_errors_as_storage, self._snapshot.conn.cursor(name="clearing_entries") as cursor:
            cursor.itersize = ENTRIES_FETCH
            cursor.execute(sql, params)
            yield from journal_rows(iter(cursor))

    # ---- each chain after its checkpoint ------------------------------
    def chains(self, start: Starts) -> list[int]:
        """Every chain: with a recorded head, a checkpoint or an entry (one
        with entries and no head is found, and named by the head check)."""
        found = set(self.chain_heads()) | set(start.checkpoints)
        found.update(int(row[0]) for row in self.reader().execute(ENTRY_CHAINS))
        return sorted(found)

    def entries_since(self, start: Starts) -> Iterator[JournalRow]:
        for chain in self.chains(start):
            yield from self._streamed(*entries_query(None, chain=chain, after_entry_no=start.after(chain)[0]))

    def count_entries_since(self, start: Starts, up_to_entry_no: int) -> int:
        return sum(int(self.reader().execute(
            "SELECT COUNT(*) FROM journal_entries WHERE chain_id = ? AND entry_no > ?",
            (chain, start.after(chain)[0])).fetchone()[0]) for chain in self.chains(start))

    def misfiled_since(self, period: str, start: Starts) -> tuple[dict[tuple[str, str], int], int]:
        """ClearingStore.misfiled_since chain by chain: the postings of each
        chain's entries after its checkpoint filed in another period than their
        entry; postings of no entry, beyond the lowest checkpointed entry."""
        rows = []
        for chain in self.chains(start):
            rows += self.reader().execute(
                "SELECT p.book, p.account, p.setlym, e.setlym, p.amount_fen FROM journal_entries e "
                "JOIN postings p ON p.entry_no = e.entry_no "
                "WHERE e.chain_id = ? AND e.entry_no > ? AND e.setlym <> p.setlym",
                (chain, start.after(chain)[0])).fetchall()
        lowest = min((start.after(chain)[0] for chain in start.checkpoints), default=0)
        rows += self.reader().execute(
            "SELECT p.book, p.account, p.setlym, NULL, p.amount_fen FROM postings p WHERE p.entry_no > ? "
            "AND NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.entry_no = p.entry_no)", (lowest,)).fetchall()
        return misfiled_differences(period, rows)

    def month_sums(self, period: str, province: str) -> SnapshotMonthSums:
        """Read in the snapshot's one transaction, when asked (its connection serves one statement at a time)."""
        return SnapshotMonthSums(self, period, province)

    def entry_texts_since(self, after_entry_no: int) -> None:
        return None  # several chains: the entries are read chain by chain (entries_since)

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
        # then the checkpoints' lock: another province's run appends to the same chains' checkpoints
        self._lock_checkpoints()
        return self._write.execute("SELECT 1 FROM clearing_runs WHERE province = ? AND period = ?",
                                   (province, period)).fetchone() is not None

    def _lock_checkpoints(self) -> None:
        self._write.execute("SELECT pg_advisory_xact_lock(?, ?)", CHECKPOINTS_LOCK)

    @contextlib.contextmanager
    def checkpointing(self) -> Iterator[None]:
        """`medsettle verify --checkpoint`'s transaction: it appends no entry,
        so it opens no hash chain of its own (posting() would), and it holds
        the lock clearing's runs append their checkpoints under."""
        self._write.begin()
        self._in_batch = True  # reads (the chains' checkpoints) run in it, under the lock
        try:
            self._lock_checkpoints()
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

"""The month-wide sums of a clearing run (the period's balance of every
account, its settlements summed per payee and place), computed while the
run checks the entries since the checkpoint one by one.

On SQLite the two sums run on worker threads, each with a read connection
of its own: the sqlite3 module lets go of the GIL while a statement runs,
so the database sorts the month's settlements on one core and sums its
postings on the other while the entry-by-entry check (Python) takes turns
with them. (Summing the settlements in two halves at once cut the wall time
on an idle machine but cost about 8 % more CPU, merge included: on a shared
machine CPU is what a run waits for.) Each worker's statement is its own
read transaction, so each is bounded by the run's snapshot: settlements up
to the snapshot's last setl_no, postings up to its last rowid. Both tables
only grow (their triggers refuse updates and deletes) and a row is appended
with the next rowid, so the bounded sums are those of the snapshot whatever
a server appends meanwhile.

A backend whose reads must share one connection (PostgreSQL's REPEATABLE
READ snapshot) computes them there, when asked (SnapshotMonthSums).
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from medsettle.ledger.clearing.store import ClearingStore, SettlementGroup

Balances = dict[tuple[str, str], int]

WORKERS = 2  # one per sum


class MonthSums(Protocol):
    def balances(self) -> Balances:
        """The period's balance of every (book, account), by posting period."""
    def groups(self) -> list[SettlementGroup]:
        """The period's settlements with a side in the province, per
        (payee, treatment place, insurance place), in that order."""
    def close(self) -> None:
        """Stops what still runs (a run that ends early)."""


class SnapshotMonthSums:
    """Read in the run's own snapshot, when asked."""

    def __init__(self, store: ClearingStore, period: str, province: str) -> None:
        self._store, self._period, self._province = store, period, province

    def balances(self) -> Balances:
        return self._store.period_balances(self._period)

    def groups(self) -> list[SettlementGroup]:
        return self._store.settlement_groups(self._period, self._province)

    def close(self) -> None:
        return None


class ThreadedMonthSums:
    """Started at once on worker threads; balances() and groups() wait for
    their results. Call inside the run's snapshot (the bounds are read there)."""

    def __init__(self, store: ClearingStore, period: str, province: str) -> None:
        settlements_end, postings_end = store.snapshot_ends()
        self._store = store
        self._connections: list[sqlite3.Connection] = []  # the workers' (store.reader() is per thread)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="clearing-sums")
        self._futures: list[Future[Any]] = []
        try:
            self._groups: Future[list[SettlementGroup]] = self._submit(
                store.settlement_groups, period, province, settlements_end)
            self._balances: Future[Balances] = self._submit(store.period_balances, period, postings_end)
        except BaseException:
            self.close()
            raise

    def _submit(self, read: Callable[..., Any], *args: Any) -> Future[Any]:
        def work() -> Any:
            with self._lock:
                self._connections.append(self._store.reader())
            return read(*args)
        future = self._pool.submit(work)
        self._futures.append(future)
        return future

    def balances(self) -> Balances:
        return self._balances.result()

    def groups(self) -> list[SettlementGroup]:
        return self._groups.result()

    def close(self) -> None:
        """Interrupts the statements still running and waits for the workers."""
        if not all(future.done() for future in self._futures):
            with self._lock:
                for conn in self._connections:
                    conn.interrupt()
        self._pool.shutdown(wait=True, cancel_futures=True)

"""The SQLite writer updates a person's balance only where it is not known
to be the stored one (SqliteLedgerStore._changed_balances): what it loaded
or wrote itself. A rollback, and a commit by another connection, make it
forget, so the stored balance is always the batch's."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import PersonState
from medsettle.ledger.storage.port import BatchWrite
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

AT = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)
PERSON = "44010000000000000001"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLedgerStore]:
    ledger = SqliteLedgerStore(tmp_path / "ledger.db")
    open_reference(ledger, FixedClock(AT))  # loads the sample persons
    yield ledger
    ledger.close()


def stored_balance(store: SqliteLedgerStore) -> int:
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT acct_balc_fen FROM persons WHERE psn_no = ?", (PERSON,)).fetchone()[0]


def write_balance(store: SqliteLedgerStore, balance: int, *, commit: bool = True, load: bool = True) -> int:
    """One batch that leaves the person at `balance`; how many UPDATEs of
    persons it ran. load=False: as a batch of a processor that has the
    person in its cache (no load_persons)."""
    updates: list[str] = []
    store.writer_connection().set_trace_callback(
        lambda sql: updates.append(sql) if sql.startswith("UPDATE persons") else None)
    store.begin()
    store.chain_head()
    if load:
        store.load_persons({PERSON})
    store.insert_batch(BatchWrite(persons={PERSON: PersonState(PERSON, 310, "440100", balance, {})}))
    store.commit() if commit else store.rollback()
    store.writer_connection().set_trace_callback(None)
    return len(updates)


def test_a_balance_the_batch_leaves_as_loaded_is_not_updated(store: SqliteLedgerStore) -> None:
    before = stored_balance(store)
    assert write_balance(store, before) == 0
    assert stored_balance(store) == before


def test_a_changed_balance_is_written_and_known_after(store: SqliteLedgerStore) -> None:
    before = stored_balance(store)
    assert write_balance(store, before - 100) == 1
    assert stored_balance(store) == before - 100
    assert write_balance(store, before - 100) == 0


def test_a_rolled_back_balance_is_forgotten(store: SqliteLedgerStore) -> None:
    before = stored_balance(store)
    write_balance(store, before - 100, commit=False)
    assert stored_balance(store) == before
    # the value the rolled-back batch wrote must not count as stored
    assert write_balance(store, before - 100, load=False) == 1
    assert stored_balance(store) == before - 100


def test_a_balance_another_connection_committed_is_not_assumed(store: SqliteLedgerStore) -> None:
    before = stored_balance(store)
    write_balance(store, before - 100)
    with sqlite3.connect(store.path) as other:
        other.execute("UPDATE persons SET acct_balc_fen = ? WHERE psn_no = ?", (before - 300, PERSON))
    # a batch that leaves the balance as the writer last wrote it still writes it
    assert write_balance(store, before - 100, load=False) == 1
    assert stored_balance(store) == before - 100

"""Review: the SQLite writer's known balances (SqliteLedgerStore._balances)
stay within KNOWN_BALANCES, and a person forgotten at the bound has the
balance the batch leaves written (an UPDATE as for any person not known).
Their cost at the bound (the removal of the oldest one by one scanned the
dict's deleted entries, 1.46 ms a batch of 11 new persons past 200,000
known) is a benchmark figure, in the commit message, not a test."""

from __future__ import annotations

import pytest

from medsettle.ledger.storage import sqlite as sqlite_store
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from tests.unit.test_sqlite_known_balances import PERSON, store, stored_balance, write_balance  # noqa: F401


def test_past_the_bound_the_known_balances_are_forgotten_and_written_again(
        store: SqliteLedgerStore, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(sqlite_store, "KNOWN_BALANCES", 1)
    before = stored_balance(store)
    assert write_balance(store, before - 100) == 1
    assert len(store._balances) <= 1
    store._balances["another person"] = 0  # a second person known: past the bound of 1
    assert write_balance(store, before - 200, load=False) == 1
    assert len(store._balances) <= 1
    assert write_balance(store, before - 200, load=False) in (0, 1)  # known or forgotten: never a wrong balance
    assert stored_balance(store) == before - 200

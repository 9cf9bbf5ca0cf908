"""The writer keeps the hash chain's head in memory between batches
(SqliteLedgerStore.chain_head): an entry another connection appends between
two batches (the clearing run) is seen, and a rolled-back batch leaves no
trace in it. The chain verify walks stays whole."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from medsettle.ledger.clearing.store import ClearingStore
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.posting.rules import Posting
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.port import StorageError
from medsettle.ledger.verify import verify_database

SETTLE_AT = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)


def make_bill(i: int) -> Bill:
    return Bill(msgid=f"B{i:06d}", fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
                insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
                fee_lines=(FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 1, 3500)), acct_used_flag=True)


@pytest.fixture
def ledger(tmp_path: Path):
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    clock = FixedClock(SETTLE_AT)
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    yield tmp_path / "ledger.db", store, processor
    store.close()


def settle(processor: SettlementProcessor, first: int, count: int) -> list:
    outcomes = processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(first, first + count)])
    assert all(o.setl_id for o in outcomes), outcomes
    return outcomes


def test_an_entry_appended_by_another_connection_between_batches_is_chained(ledger) -> None:
    path, store, processor = ledger
    settle(processor, 0, 5)
    head = store.chain_head()
    other = ClearingStore(path)  # another connection, as the clearing run's
    with other.posting():
        entry_no, digest = other.append_entry("CLR-test", "clear", "2026-10", SETTLE_AT,
                                              [Posting("440100", "a", 5), Posting("440100", "b", -5)])
    other.close()
    assert entry_no == head[1] + 1
    store.begin()
    assert store.chain_head() == (head[0], entry_no, digest)
    store.rollback()
    later = settle(processor, 5, 3)
    assert [s.setl_id for s in later] == [f"S{n:012d}" for n in range(head[0] + 1, head[0] + 4)]
    report = verify_database(path)
    assert report.ok, report


def test_a_rolled_back_batch_leaves_the_head_as_committed(ledger, monkeypatch) -> None:
    path, store, processor = ledger
    settle(processor, 0, 4)
    committed = store.chain_head()

    def full_disk() -> None:
        store.rollback()
        raise StorageError("database or disk is full")

    monkeypatch.setattr(store, "commit", full_disk)
    failed = processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(4, 8)])
    assert all("storage unavailable" in str(o) for o in failed)
    monkeypatch.undo()
    store.begin()
    assert store.chain_head() == committed
    store.rollback()
    settle(processor, 8, 4)
    assert verify_database(path).ok

"""The sole writer reads no idempotency key for a batch of settlements: it
takes every (institution, msgid) for new and lets the settlements' UNIQUE
index refuse a stored one, then runs the batch again looking its keys up.
A replay gets its first answer however it arrives: in a later batch, after a
restart, beside new bills, or where the replay itself would be refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.verify import verify_database

CLOCK = FixedClock(dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ))
CODE = "H44010100001"


class CountingStore(SqliteLedgerStore):
    """Counts the key lookups the processor asks for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.key_reads = 0

    def find_by_keys(self, keys: set[tuple[str, str]]) -> Any:
        self.key_reads += 1
        return super().find_by_keys(keys)

    def find_by_key(self, fixmedins_code: str, msgid: str) -> Any:
        self.key_reads += 1
        return super().find_by_key(fixmedins_code, msgid)


def bill(msgid: str, price: int = 2500, nonce: str = "") -> Bill:
    return Bill(msgid=msgid, fixmedins_code=CODE, psn_no="44010000000000000001", insutype=310,
                insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
                fee_lines=(FeeLine("1", "S0001", 1, price), FeeLine("2", "XB0201", 1, 3500)), acct_used_flag=True,
                ecert_nonce=nonce, ecert_expires_us=2_000_000_000_000_000 if nonce else 0)


@pytest.fixture
def ledger(tmp_path: Path):
    store = CountingStore(tmp_path / "ledger.db")
    processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
    yield tmp_path / "ledger.db", store, processor
    store.close()


def settle(processor: SettlementProcessor, *bills: Bill) -> list[Any]:
    return processor.run_batch([SettleCommand(b, persist=True) for b in bills])


def stored_msgids(store: SqliteLedgerStore) -> list[str]:
    return [row[0] for row in store.reader().execute("SELECT msgid FROM settlements ORDER BY setl_no")]


def test_new_bills_read_no_key_and_run_once(ledger) -> None:
    _, store, processor = ledger
    outcomes = settle(processor, bill("M1"), bill("M2"))
    outcomes += settle(processor, bill("M3"))
    assert [o.setl_id for o in outcomes] == ["S000000000001", "S000000000002", "S000000000003"]
    assert store.key_reads == 0 and processor.key_reruns == 0


def test_a_replay_beside_new_bills_gets_its_stored_answer_and_the_batch_settles_once(ledger) -> None:
    path, store, processor = ledger
    first = settle(processor, bill("M1"), bill("M2"))
    again = settle(processor, bill("M3"), bill("M2"), bill("M4"), bill("M3"))
    assert processor.key_reruns == 1
    assert again[1] == first[1]  # the stored settlement, equal in every field
    assert again[3] == again[0]  # the batch's own earlier answer to M3
    assert [o.setl_id for o in again] == ["S000000000003", "S000000000002", "S000000000004", "S000000000003"]
    assert stored_msgids(store) == ["M1", "M2", "M3", "M4"]
    assert verify_database(path).ok


def test_a_replay_after_a_restart_gets_its_stored_answer(ledger) -> None:
    path, store, processor = ledger
    first = settle(processor, bill("M1"))
    reopened = SqliteLedgerStore(path)
    try:
        again = SettlementProcessor(reopened, open_reference(reopened, CLOCK), CLOCK)
        assert settle(again, bill("M1")) == first
        assert again.key_reruns == 1
        assert stored_msgids(reopened) == ["M1"]
    finally:
        reopened.close()


def test_a_replay_that_would_now_be_refused_gets_its_stored_answer(ledger) -> None:
    _, store, processor = ledger
    first = settle(processor, bill("M1", nonce="N1"))
    assert isinstance(first[0], Settlement)
    # As new, M1 would be refused (its e-cert is used); the key is looked up before answering.
    again = settle(processor, bill("M1", nonce="N1"), bill("M2", nonce="N1"))
    assert again[0] == first[0]
    assert isinstance(again[1], Refused) and again[1].reason == Reason.RULE_REFUSED
    assert processor.key_reruns == 0 and store.key_reads == 2  # the two refused keys, nothing else
    assert stored_msgids(store) == ["M1"]


@pytest.mark.parametrize("nonce", ["", "N1"], ids=["would-settle", "would-be-refused"])
def test_a_stored_key_with_another_payload_is_a_conflict(ledger, nonce: str) -> None:
    _, store, processor = ledger
    first = settle(processor, bill("M1", nonce=nonce))
    again = settle(processor, bill("M1", price=2600, nonce=nonce))
    assert isinstance(again[0], Refused) and again[0].reason == Reason.IDEMPOTENCY_CONFLICT
    assert first[0].setl_id in str(again[0])
    assert stored_msgids(store) == ["M1"]


def test_a_replayed_reversal_gets_its_stored_answer(ledger) -> None:
    _, store, processor = ledger
    original = settle(processor, bill("M1"))[0]
    reverse = ReverseCommand("R1", CODE, original.setl_id)
    first = processor.run_batch([reverse])
    again = processor.run_batch([reverse, SettleCommand(bill("M2"), persist=True)])
    assert again[0] == first[0] and first[0].orig_setl_id == original.setl_id
    assert isinstance(again[1], Settlement)
    assert processor.key_reruns == 0
    assert stored_msgids(store) == ["M1", "R1", "M2"]

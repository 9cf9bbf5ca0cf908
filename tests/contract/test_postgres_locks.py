"""What several servers on one PostgreSQL ledger read and then change is
locked for the rest of the batch: a second server's batch waits for it
(here: gives up at once, with a short lock_timeout, and is told to run again)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import psycopg
import pytest

from conftest import LEDGER_URLS, SETTLE_AT, make_bill
from medsettle.ledger.clock import FixedClock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import PersonState, Settlement
from medsettle.ledger.settlement.prescriptions import RxRecord
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import BatchWrite, InternetWrite, LedgerStore, WriteConflict
from medsettle.ledger.storage.postgres import PostgresLedgerStore

RESIDENT = "44010000000000000002"  # another person of the sample reference data (resident insurance)
NO_QUOTA = "H44010100002"  # a hospital without a budget quota: two batches there take no common lock
RECORD = RxRecord("H44010100901", "RX9", "S000000000001", "44010000000000000001", "DR1", "2026-10-15",
                  "2026-10-17", (("XA0102", 4),))


@pytest.fixture
def two_servers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[LedgerStore, LedgerStore]]:
    url = LEDGER_URLS["postgres"](tmp_path, request)
    first, second = open_ledger(url), open_ledger(url)
    yield first, second
    first.close()
    second.close()


def test_a_recorded_prescription_read_by_one_batch_is_held_until_it_ends(two_servers) -> None:
    first, second = two_servers
    first.begin()
    first.internet_state().write(InternetWrite(rx_issued=[RECORD]))
    first.commit()
    first.begin()
    assert first.internet_state().rx_record("H44010100901", "RX9") == RECORD  # the first server's sale checks it
    second.begin()
    state = second.internet_state()
    state._conn.execute("SET LOCAL lock_timeout = '100ms'")  # type: ignore[attr-defined]
    with pytest.raises(WriteConflict):
        state.rx_record("H44010100901", "RX9")  # the second server's sale of the same prescription waits
    second.rollback()
    first.commit()
    second.begin()
    assert second.internet_state().rx_record("H44010100901", "RX9") == RECORD  # free once the first batch ended
    second.rollback()


def _wait_for_a_lock_wait(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database()").fetchone()[0] == 0:
            assert time.monotonic() < deadline, "the second batch never waited for the person's lock"
            time.sleep(0.01)


def test_a_person_read_after_waiting_for_another_batch_has_that_batchs_year_rows(pg_url: str) -> None:
    """The second server's batch waits for the person's row, then reads the
    year rows the first batch committed meanwhile, not those of before."""
    first, second = open_ledger(pg_url), open_ledger(pg_url)
    try:
        _, persons = parse_document(sample_document())
        first.save_reference('{"format": "x"}', persons, SETTLE_AT)
        person = next(p for p in persons if p.psn_no == RESIDENT)
        first.begin()
        assert first.load_persons({RESIDENT})[RESIDENT].years == {}
        after = PersonState(RESIDENT, person.insutype, person.insuplc_admdvs, person.acct_balc_fen, {2026: (300, 4_000)})
        first.insert_batch(BatchWrite(persons={RESIDENT: after}, touched_years={(RESIDENT, 2026)}))
        with ThreadPoolExecutor(1) as pool:
            second.begin()
            waiting = pool.submit(second.load_persons, {RESIDENT})
            _wait_for_a_lock_wait(pg_url)
            first.commit()
            loaded = waiting.result(timeout=30)
        second.rollback()
        assert loaded == {RESIDENT: after}
    finally:
        first.close()
        second.close()


class _RacedStore(PostgresLedgerStore):
    """A server whose next batch, just before its rows go into the pipeline,
    is beaten to one of its keys by another server's commit (`race`)."""

    race: Callable[[], object] | None = None

    def insert_batch(self, batch: BatchWrite) -> None:
        race, self.race = self.race, None
        if race is not None:
            race()
        super().insert_batch(batch)


def test_batches_rolled_back_in_their_pipeline_leave_no_statement_taken_for_prepared(pg_url: str) -> None:
    """psycopg prepares a statement on its fifth run; one whose preparation
    was queued in a pipeline behind a statement that failed (a key another
    server took) is skipped by PostgreSQL. A ROLLBACK sent as a statement
    left psycopg believing it prepared, and every later batch of that
    server failed ("prepared statement _pg3_N does not exist"); the store's
    rollback makes psycopg forget every name PostgreSQL does not hold."""
    from medsettle.server.convert import bill_from_pb

    clock = FixedClock(SETTLE_AT)
    store, other = _RacedStore(pg_url), PostgresLedgerStore(pg_url)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    other_processor = SettlementProcessor(other, open_reference(other, clock), clock)

    def settle(msgid: str, race: bool) -> object:
        if race:  # the other server settles another person's bill under the same key first
            store.race = lambda: other_processor.run_batch([SettleCommand(bill_from_pb(make_bill(
                msgid=msgid, code=NO_QUOTA, psn_no=RESIDENT, insutype=390)), True)])
        (outcome,) = processor.run_batch([SettleCommand(bill_from_pb(make_bill(msgid=msgid, code=NO_QUOTA)), True)])
        return outcome

    try:
        # conflicts in the pipeline while statements are being counted towards psycopg's threshold: with
        # ROLLBACK sent as a statement, the 18th batch on was refused STORAGE_UNAVAILABLE for good
        races = [True, False, False, False, True, True, True, True, True] + [False] * 5 + [True] * 3 + [False] * 3
        outcomes = [settle(f"RACE-{n}", race) for n, race in enumerate(races)]
        for n, (race, outcome) in enumerate(zip(races, outcomes)):
            if race:  # the rerun finds the other server's settlement of another bill under the key
                assert isinstance(outcome, Refused) and outcome.reason is Reason.IDEMPOTENCY_CONFLICT, (n, outcome)
            else:
                assert isinstance(outcome, Settlement), (n, outcome)
        assert processor.conflicts == races.count(True)
        prepared = store.writer_connection().execute("SELECT COUNT(*) FROM pg_prepared_statements").fetchone()[0]
        assert prepared > 0  # statements are prepared (a batch's rows are parsed once per connection)
    finally:
        store.close()
        other.close()


def _prepared_on_server(store: PostgresLedgerStore) -> dict[str, str]:
    return dict(store.writer_connection().execute("SELECT name, statement FROM pg_prepared_statements").fetchall())


def test_a_write_conflict_keeps_the_batches_statements_prepared(pg_url: str) -> None:
    """A batch beaten to its key rolls back and runs again; what it had
    prepared stays prepared (PostgreSQL keeps prepared statements across a
    rollback). psycopg's rollback() deallocated them all, and the next
    batches parsed and planned each statement again, about 60 times per
    conflict, before it prepared them anew."""
    from medsettle.server.convert import bill_from_pb

    clock = FixedClock(SETTLE_AT)
    store, other = _RacedStore(pg_url), PostgresLedgerStore(pg_url)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    other_processor = SettlementProcessor(other, open_reference(other, clock), clock)
    settle = lambda msgid: processor.run_batch(  # noqa: E731
        [SettleCommand(bill_from_pb(make_bill(msgid=msgid, code=NO_QUOTA)), True)])
    try:
        for n in range(8):  # each statement's fifth run and on: prepared
            assert isinstance(settle(f"WARM-{n}")[0], Settlement)
        before = _prepared_on_server(store)
        assert len(before) >= 10
        store.race = lambda: other_processor.run_batch([SettleCommand(bill_from_pb(make_bill(
            msgid="BEATEN", code=NO_QUOTA, psn_no=RESIDENT, insutype=390)), True)])
        (outcome,) = settle("BEATEN")
        assert isinstance(outcome, Refused) and outcome.reason is Reason.IDEMPOTENCY_CONFLICT
        assert processor.conflicts == 1
        after = _prepared_on_server(store)
        assert before.items() <= after.items(), sorted(set(before) - set(after))
        names = store.writer_connection().conn._prepared._names  # what psycopg will run as prepared
        assert {name.decode() for name in names.values()} <= set(after)
        assert isinstance(settle("AFTER")[0], Settlement)
        assert before.items() <= _prepared_on_server(store).items()
    finally:
        store.close()
        other.close()

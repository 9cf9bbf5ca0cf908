"""Two servers on one PostgreSQL ledger: a batch that waited for a person
another server's batch held reads, once that batch commits, the person as it
left them: their balance and every year row (the deductible used and the
fund paid so far), not year rows from before the wait. A year total read
stale would be written back over the other server's (a lost update)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from conftest import LEDGER_URLS, SETTLE_AT
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.settlement.model import PersonState
from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import BatchWrite, LedgerStore


@pytest.fixture
def two_servers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, LedgerStore, LedgerStore]]:
    url = LEDGER_URLS["postgres"](tmp_path, request)
    first, second = open_ledger(url), open_ledger(url)
    yield url, first, second
    first.close()
    second.close()


def _wait_for_a_lock_wait(url: str) -> None:
    """Returns once a session of the database waits for a row lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock'").fetchone()[0]:
            assert time.monotonic() < deadline, "the second server's batch never waited for the person"
            time.sleep(0.01)


def test_a_person_read_after_waiting_for_another_servers_batch_has_that_batchs_year_rows(two_servers) -> None:
    url, first, second = two_servers
    _, persons = parse_document(sample_document())
    first.save_reference('{"format": "x"}', persons, SETTLE_AT)
    person = persons[0]
    first.begin()
    before = first.load_persons({person.psn_no})[person.psn_no]  # the first server's batch holds the person
    after = PersonState(person.psn_no, person.insutype, person.insuplc_admdvs, before.acct_balc_fen - 100,
                        {2026: (300, 4_000)})
    write = BatchWrite()
    write.persons = {person.psn_no: after}
    write.touched_years = {(person.psn_no, 2026)}
    first.insert_batch(write)
    read: dict[str, PersonState] = {}

    def second_batch() -> None:  # the second server's batch settles the same person
        second.begin()
        try:
            read.update(second.load_persons({person.psn_no}))
        finally:
            second.rollback()

    waiting = threading.Thread(target=second_batch)
    waiting.start()
    try:
        _wait_for_a_lock_wait(url)
        first.commit()
    finally:
        waiting.join()
    assert read == {person.psn_no: after}

"""What several servers on one PostgreSQL ledger read and then change is
locked for the rest of the batch: a second server's batch waits for it
(here: gives up at once, with a short lock_timeout, and is told to run again)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from conftest import LEDGER_URLS
from medsettle.ledger.settlement.prescriptions import RxRecord
from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import InternetWrite, LedgerStore, WriteConflict

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


def test_no_connection_prepares_statements_on_the_server(pg_url: str) -> None:
    # A batch rolled back after pipelined statements once left a server's
    # connection believing statements prepared that PostgreSQL did not know.
    from medsettle.ledger.storage import pg_connect

    with pg_connect.connect(pg_url, autocommit=True) as conn:
        for _ in range(10):  # psycopg prepares a statement on its fifth run by default
            conn.execute("SELECT 1 + %s", (1,))
        assert conn.prepare_threshold is None
        assert conn.execute("SELECT COUNT(*) FROM pg_prepared_statements").fetchone()[0] == 0

"""`medsettle verify` on a PostgreSQL ledger that servers keep writing to:
it reads every chain and each writer's recorded head, and must read them as
one state of the ledger. Heads read after the walk (another moment) are
ahead of the chains it walked whenever a batch commits meanwhile, and a
clean ledger was reported as cut ("entries at its end were removed")."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from medsettle.ledger.clock import FixedClock
from medsettle.ledger.progress import Hooks
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Settlement
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.postgres import PostgresLedgerStore
from medsettle.ledger.verify import verify_database
from medsettle.server.convert import bill_from_pb

from conftest import SETTLE_AT, make_bill
from tests.contract.test_review_commit_durability import load_sample

CLOCK = FixedClock(SETTLE_AT)
VERIFY_RUNS = 6
# A large ledger's walk takes minutes; here its progress report pauses it, so batches commit during it.
LONG_WALK = Hooks(advance=lambda done: time.sleep(0.2))


def test_verify_while_a_server_writes_reports_a_clean_ledger_clean(pg_url: str, tmp_path: Path) -> None:
    load_sample(pg_url)
    store = PostgresLedgerStore(pg_url)
    processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
    stop = threading.Event()
    settled: list[object] = []

    def write() -> None:  # one server's writer, batch after batch
        n = 0
        while not stop.is_set():
            commands = [SettleCommand(bill_from_pb(make_bill(msgid=f"LIVE-{n}-{i}", code="H44010100002")), True)
                        for i in range(4)]
            settled.extend(processor.run_batch(commands))
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = []
        while len(reports) < VERIFY_RUNS:
            if len(settled) > 8 * len(reports):  # batches commit between the runs and during them
                reports.append(verify_database(pg_url, LONG_WALK))
    finally:
        stop.set()
        writer.join(60)
        store.close()
    assert all(isinstance(outcome, Settlement) for outcome in settled), settled[:3]
    for report in reports:
        assert report.ok, [bad.problem for bad in report.bad_entries[:3]]
    assert verify_database(pg_url).ok

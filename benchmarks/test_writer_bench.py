"""The writer's batch: 512 settlements split, posted and committed in one
transaction on a real SQLite file (WAL, synchronous=FULL)."""

from __future__ import annotations

from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Settlement
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

from conftest import make_bill

BATCH = 512


def test_commit_batch_of_512(benchmark, db_path, clock):
    store = SqliteLedgerStore(db_path)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)

    def commands():
        return ([SettleCommand(make_bill(i), persist=True) for i in range(BATCH)],), {}

    outcomes = benchmark.pedantic(processor.run_batch, setup=commands, rounds=20, warmup_rounds=2)
    assert len(outcomes) == BATCH and all(isinstance(o, Settlement) for o in outcomes)
    stored = store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
    assert stored == BATCH * 22  # every round committed all of its batch
    store.close()

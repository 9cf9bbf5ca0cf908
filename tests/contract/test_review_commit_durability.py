"""An acknowledged settlement survives a power loss, not only a killed
process: when a batch commits, the database must flush it before COMMIT
returns. A kill -9 test cannot see a setting that trades that away (the
operating system still writes what a killed process left in its page cache),
so this checks the setting the commit actually runs under, inside the
batch's own transaction, on each backend: SQLite in WAL mode with
synchronous=FULL (NORMAL loses the last commits on power loss), PostgreSQL
with synchronous_commit not off (a session or SET LOCAL could turn it off)."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

from click.testing import CliRunner

from medsettle.cli import main

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import LedgerStore
from medsettle.ledger.storage.postgres import PostgresLedgerStore

CLOCK = FixedClock(dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ))
SQLITE_SYNCHRONOUS_FULL = 2


def commit_settings(store: LedgerStore) -> dict[str, object]:
    conn = store.writer_connection()  # type: ignore[attr-defined]
    if isinstance(store, PostgresLedgerStore):
        return {"synchronous_commit": conn.execute("SHOW synchronous_commit").fetchone()[0]}
    return {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0]}


def test_a_batch_commits_under_a_setting_that_flushes_it_to_disk(ledger_db: str) -> None:
    load_sample(ledger_db)
    store = open_ledger(ledger_db)
    seen: list[dict[str, object]] = []
    real_commit = store.commit

    def commit() -> None:
        seen.append(commit_settings(store))  # in the batch's transaction, as COMMIT is sent
        real_commit()

    try:
        processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
        store.commit = commit  # type: ignore[method-assign]
        bill = Bill(msgid="DURABLE-1", fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
                    insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
                    fee_lines=(FeeLine("1", "S0001", 1, 2500),), acct_used_flag=True)
        (outcome,) = processor.run_batch([SettleCommand(bill, persist=True)])
        assert isinstance(outcome, Settlement), outcome
    finally:
        store.close()
    assert seen, "the batch never committed"
    for settings in seen:
        if "synchronous_commit" in settings:
            assert settings["synchronous_commit"] != "off", settings
        else:
            assert settings == {"journal_mode": "wal", "synchronous": SQLITE_SYNCHRONOUS_FULL}, settings


def load_sample(db: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference.json"
        reference.write_text(json.dumps(sample_document()))
        loaded = CliRunner().invoke(main, ["load-reference", "--db", db, str(reference)])
        assert loaded.exit_code == 0, loaded.output

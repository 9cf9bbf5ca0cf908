"""Clearing computed in the database against the row-by-row oracle (the
reconciliation as it was, tests/oracle): on generated months (several
seeds, earlier months in the ledger, reversals, prepaid funds, with and
without a verified checkpoint, the home province and one whose agencies
are mostly elsewhere) both give the same statement, byte for byte; on a
tampered month both refuse, whether the change is before the checkpoint or
after it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from medsettle.ledger.clearing.run import Outcome, run_clearing
from medsettle.ledger.clearing.store import ClearingStore
from tests.oracle import clearing_bench
from medsettle.ledger.clock import CHINA_TZ, parse_clock
from tests.oracle.row_by_row_clearing import reconcile_row_by_row

CLOCK = "2026-11-02T09:00:00+08:00"
PERIOD = "2026-10"


BENCH = clearing_bench.load()


def month(path: Path, seed: int, history_months: int, unverified: int | None, settlements: int = 1500) -> Path:
    BENCH.generate(path, settlements, 6, 60, seed, history_months, unverified)
    return path


def cleared_at() -> str:
    return parse_clock(CLOCK).now().astimezone(CHINA_TZ).isoformat()


@pytest.mark.parametrize("seed, history_months, unverified, province", [
    (1, 0, None, "44"),
    (2, 1, 200, "44"),
    (3, 2, 0, "44"),
    (4, 1, 700, "13"),
])
def test_the_statement_is_the_row_by_row_oracles_byte_for_byte(tmp_path, seed, history_months, unverified, province):
    db = month(tmp_path / "month.db", seed, history_months, unverified)
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    store = ClearingStore(db)
    try:
        oracle = reconcile_row_by_row(store, province, PERIOD)
        assert oracle.log.total == 0, oracle.log.listed[:3]
        dry = run_clearing(store, province, PERIOD, parse_clock(CLOCK), dry_run=True)
        assert dry.outcome is Outcome.DRY_RUN
        assert dry.statement_json == oracle.statement_json(province, PERIOD, cleared_at(), None)
        head = store.journal_head()[0]
        real = run_clearing(store, province, PERIOD, parse_clock(CLOCK))
        assert real.outcome is Outcome.CLEARED
        entry_hash = store.entry_hash(head + 1)
        assert entry_hash is not None
        assert real.statement_json == oracle.statement_json(province, PERIOD, cleared_at(), (head + 1, entry_hash))
        expected_checked = head - (0 if unverified is None else store.chain_checkpoints()[0].entry_no)
        assert real.entries_verified == expected_checked  # only what the checkpoint does not vouch for
    finally:
        store.close()
    # the same month cleared from a copy gives the same bytes (nothing depends on the run's own history)
    again = ClearingStore(copy)
    try:
        assert run_clearing(again, province, PERIOD, parse_clock(CLOCK)).statement_json == real.statement_json
    finally:
        again.close()


def tamper(db: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(db) as conn:
        for trigger in ("postings_append_only_u", "settlements_append_only_u"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        assert conn.execute(sql, params).rowcount == 1


@pytest.mark.parametrize("where", ["before_checkpoint", "after_checkpoint"])
@pytest.mark.parametrize("what", ["posting", "settlement"])
def test_a_tampered_month_is_refused_by_both(tmp_path, where, what):
    db = month(tmp_path / "month.db", 7, 0, 300)
    with sqlite3.connect(db) as conn:
        checkpoint = conn.execute("SELECT entry_no FROM chain_checkpoints").fetchone()[0]
        entry_no = checkpoint - 50 if where == "before_checkpoint" else checkpoint + 50
        setl_id, = conn.execute("SELECT setl_id FROM journal_entries WHERE entry_no = ?", (entry_no,)).fetchone()
    if what == "posting":
        tamper(db, "UPDATE postings SET amount_fen = amount_fen + 7 WHERE rowid = "
                   "(SELECT MIN(rowid) FROM postings WHERE entry_no = ?)", entry_no)
    else:
        tamper(db, "UPDATE settlements SET hifp_pay_fen = hifp_pay_fen + 7 WHERE setl_id = ?", setl_id)
    store = ClearingStore(db, read_only=True)
    try:
        oracle = reconcile_row_by_row(store, "44", PERIOD)
        result = run_clearing(store, "44", PERIOD, parse_clock(CLOCK), dry_run=True)
    finally:
        store.close()
    assert oracle.log.total > 0
    assert result.outcome is Outcome.BREAKS
    kinds = result.breaks["counts"]
    if where == "after_checkpoint":  # checked entry by entry: named, as the oracle names it
        assert kinds["journal_entry"] == 1 == oracle.log.counts["journal_entry"]
        entry_break = next(b for b in result.breaks["breaks"] if b["kind"] == "journal_entry")
        assert setl_id in entry_break["where"]
    else:  # vouched for by the checkpoint: the month's sums see it
        assert "journal_entry" not in kinds and kinds["settlement_postings"] >= 1

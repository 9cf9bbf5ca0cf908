"""`medsettle clear` on PostgreSQL against SQLite: the same traffic, sent
through the real gRPC server to a ledger on each backend with the same
fixed clock, clears to the same statement byte for byte (apart from the
clearing entry's number and hash, which belong to each ledger's own
journal); a re-run on PostgreSQL prints the stored bytes and posts nothing;
`verify` passes after it; two runs at once post once; a run that fails
midway leaves nothing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clearing.period import ClearingRefused
from medsettle.ledger.clearing.postgres_store import PostgresClearingStore
from medsettle.ledger.clearing.run import Outcome, run_clearing
from medsettle.ledger.clearing.statement import render_json
from medsettle.ledger.clock import FixedClock, parse_clock

from conftest import SETTLE_AT, make_bill, serving_sample
from tests.e2e.test_clearing_cli import OCT_CLEARING_CLOCK, reverse, settle_month

PERIOD = "2026-10"


def run(*args: str, stdout_only: bool = False) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout if stdout_only else result.output


def month_of_traffic(db: str, tmp_path: Path) -> None:
    """The same month on any backend: settlements local, in-province and
    cross-province, a reversal, a prepayment."""
    with serving_sample(db, tmp_path, FixedClock(SETTLE_AT)) as client:
        results = settle_month(client, make_bill)
        reverse(client, results[2], "REV-PG-1")
    code, out = run("prepay", "--province", "44", "--agency", "440300", "--amount-fen", "150000", "--db", db,
                    "--clock", "2026-10-20T10:00:00+08:00")
    assert code == 0, out


def clear(db: str, out: Path, *extra: str) -> tuple[int, str]:
    return run("clear", "--province", "44", "--period", PERIOD, "--db", db, "--clock", OCT_CLEARING_CLOCK,
               "--statement-dir", str(out), *extra, stdout_only="--json" in extra)


def journal(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT kind, COUNT(*) FROM journal_entries GROUP BY kind").fetchall())


def test_postgres_clears_to_the_statement_sqlite_writes(pg_url: str, tmp_path: Path) -> None:
    sqlite_db = str(tmp_path / "ledger.db")
    for db in (sqlite_db, pg_url):
        month_of_traffic(db, tmp_path)

    code, out = clear(sqlite_db, tmp_path / "sqlite")
    assert code == 0, out
    code, out = clear(pg_url, tmp_path / "pg")
    assert code == 0, out
    on_sqlite = (tmp_path / "sqlite" / "statement.json").read_text("utf-8")
    on_pg = (tmp_path / "pg" / "statement.json").read_text("utf-8")
    assert json.loads(on_pg)["positions"], "the month must have something to clear"
    # every byte but the clearing entry's number and hash (each ledger's own journal): the PostgreSQL
    # statement with the SQLite entry put in renders to the SQLite file's bytes
    assert render_json(json.loads(on_sqlite)) == on_sqlite
    swapped = json.loads(on_pg)
    swapped["clearing_entry"] = json.loads(on_sqlite)["clearing_entry"]
    assert render_json(swapped) == on_sqlite
    for name in ("statement.csv", "payment_instructions.csv"):
        assert (tmp_path / "pg" / name).read_bytes() == (tmp_path / "sqlite" / name).read_bytes(), name
    entry = json.loads(on_pg)["clearing_entry"]
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT entry_no, hash FROM journal_entries WHERE kind = 'clearing'").fetchall()
    assert stored == [(entry["entry_no"], entry["hash"])]

    before = journal(pg_url)
    code, printed = clear(pg_url, tmp_path / "again", "--json")
    assert code == 0, printed
    assert printed == on_pg  # the stored bytes, printed again
    assert (tmp_path / "again" / "statement.json").read_text("utf-8") == on_pg
    assert journal(pg_url) == before and before["clearing"] == 1

    code, out = run("verify", "--db", pg_url)
    assert code == 0 and "the hash chain is intact" in out, out


def test_two_runs_at_once_post_once(pg_url: str, tmp_path: Path) -> None:
    month_of_traffic(pg_url, tmp_path)
    outcomes: list[object] = []

    def one_run() -> None:
        store = PostgresClearingStore(pg_url)
        try:
            outcomes.append(run_clearing(store, "44", PERIOD, parse_clock(OCT_CLEARING_CLOCK)).outcome)
        except ClearingRefused as refusal:
            outcomes.append(refusal)
        finally:
            store.close()

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(120)
    assert outcomes.count(Outcome.CLEARED) == 1, outcomes
    other = next(o for o in outcomes if o is not Outcome.CLEARED)
    assert other is Outcome.ALREADY_CLEARED or "cleared by another run" in str(other), outcomes
    assert journal(pg_url)["clearing"] == 1


class _FailsAfterPosting(PostgresClearingStore):
    """A run that dies after its clearing entry is written, before the run is recorded."""

    def record_run(self, run: object) -> None:
        raise KeyboardInterrupt


def test_a_run_failing_midway_leaves_nothing_and_the_next_run_clears(pg_url: str, tmp_path: Path) -> None:
    month_of_traffic(pg_url, tmp_path)
    before = journal(pg_url)
    store = _FailsAfterPosting(pg_url)
    with pytest.raises(KeyboardInterrupt):
        run_clearing(store, "44", PERIOD, parse_clock(OCT_CLEARING_CLOCK))
    store.close()
    assert journal(pg_url) == before and "clearing" not in before
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM clearing_runs").fetchone()[0] == 0
    code, out = clear(pg_url, tmp_path / "pg")
    assert code == 0, out
    code, out = run("verify", "--db", pg_url)
    assert code == 0, out


def test_entries_missing_from_the_end_of_a_chain_are_a_break_and_nothing_is_posted(pg_url: str, tmp_path: Path) -> None:
    month_of_traffic(pg_url, tmp_path)
    with psycopg.connect(pg_url) as conn:  # a writer's recorded head past its chain's last entry
        conn.execute("UPDATE chain_heads SET last_entry_no = last_entry_no + 1 "
                     "WHERE chain_id = (SELECT MIN(chain_id) FROM chain_heads WHERE entries > 0)")
    before = journal(pg_url)
    code, out = clear(pg_url, tmp_path / "pg")
    assert code == 3, out
    report = json.loads((tmp_path / "pg" / "breaks.json").read_text("utf-8"))
    assert any("entries at its end were removed" in b["detail"] for b in report["breaks"]), report
    assert journal(pg_url) == before

"""Clearing's checkpoints on PostgreSQL, one list per hash chain (a writer's
chain_heads row), on ledgers written by the real server: a clean run records
a checkpoint at the end of each chain it checked; the next run checks only
each chain's entries after its checkpoint; a change after a checkpoint is a
break naming the entry, and nothing is posted; a change behind one is seen
by the month's sums when its month is cleared, and by `medsettle verify`
(which checks every entry) whatever its month; a changed checkpoint is a
break; a ledger written at schema version 1 clears after `db upgrade`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clearing.postgres_store import PostgresClearingStore
from medsettle.ledger.clearing.run import Outcome, RunResult, run_clearing
from medsettle.ledger.clock import CHINA_TZ, FixedClock, parse_clock
from medsettle.ledger.storage import migrations

from conftest import make_bill, serving_sample
from tests.e2e.test_clearing_cli import NOV_CLEARING_CLOCK, OCT_CLEARING_CLOCK, settle_month
from tests.e2e.test_clearing_postgres import month_of_traffic
from tests.e2e.test_review_schema_steps import _writes_only_columns_it_finds as writes_only_columns_it_finds

NOVEMBER = FixedClock(dt.datetime(2026, 11, 16, 11, 0, tzinfo=CHINA_TZ))
# the entries no checkpoint covers: each chain's after its newest checkpoint
UNCOVERED = ("SELECT COUNT(*) FROM journal_entries e WHERE e.entry_no > "
             "COALESCE((SELECT MAX(c.entry_no) FROM chain_checkpoints c WHERE c.chain_id = e.chain_id), 0)")


def clear(url: str, province: str, period: str, clock: str) -> RunResult:
    store = PostgresClearingStore(url)
    try:
        return run_clearing(store, province, period, parse_clock(clock))
    finally:
        store.close()


def query(url: str, sql: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def tamper(url: str, sql: str) -> None:
    """A change behind the service's back: the append-only triggers off for this session."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        assert conn.execute(sql).rowcount == 1


def verify(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["verify", "--db", url, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def cleared_october(pg_url: str, tmp_path: Path) -> str:
    """October's traffic (two servers' chains), cleared for province 44."""
    month_of_traffic(pg_url, tmp_path)
    entries = query(pg_url, "SELECT COUNT(*) FROM journal_entries")[0][0]
    result = clear(pg_url, "44", "2026-10", OCT_CLEARING_CLOCK)
    assert result.outcome is Outcome.CLEARED, result.breaks
    assert result.entries_verified == entries  # no checkpoint yet: every entry
    return pg_url


def november(url: str, tmp_path: Path) -> int:
    """November's traffic through a new server (a new chain); how many entries it added."""
    before = query(url, "SELECT COUNT(*) FROM journal_entries")[0][0]
    with serving_sample(url, tmp_path, NOVEMBER) as client:
        settle_month(client, make_bill, rounds=1)
    return query(url, "SELECT COUNT(*) FROM journal_entries")[0][0] - before


def test_each_chain_is_checkpointed_and_the_next_run_checks_only_what_came_after(cleared_october: str,
                                                                                  tmp_path: Path) -> None:
    url = cleared_october
    clearing_chain = query(url, "SELECT chain_id FROM journal_entries WHERE kind = 'clearing'")[0][0]
    heads = {chain: (last_no, last_hash) for chain, last_no, last_hash in query(
        url, "SELECT chain_id, last_entry_no, last_hash FROM chain_heads WHERE entries > 0 AND chain_id <> %s",
        clearing_chain)}
    assert len(heads) >= 2  # the prepayment's writer and the server's: one ledger, several chains
    checkpoints = {chain: (entry_no, entry_hash) for chain, entry_no, entry_hash in query(
        url, "SELECT chain_id, entry_no, entry_hash FROM chain_checkpoints")}
    assert checkpoints == heads  # one per chain, at its end as the run's snapshot saw it
    assert query(url, UNCOVERED)[0][0] == 1  # only the clearing entry, appended after the snapshot

    added = november(url, tmp_path)
    assert query(url, UNCOVERED)[0][0] == added + 1
    result = clear(url, "44", "2026-11", NOV_CLEARING_CLOCK)
    assert result.outcome is Outcome.CLEARED, result.breaks
    assert result.entries_verified == added + 1  # November's and October's clearing entry, nothing older
    assert query(url, "SELECT COUNT(*) FROM chain_checkpoints")[0][0] == len(heads) + 2  # their two chains'
    assert query(url, UNCOVERED)[0][0] == 1
    code, report = verify(url)
    assert code == 0, report


def test_a_change_after_a_checkpoint_is_a_break_naming_the_entry_and_nothing_is_posted(cleared_october: str,
                                                                                       tmp_path: Path) -> None:
    url = cleared_october
    november(url, tmp_path)
    changed = query(url, "SELECT MAX(entry_no) FROM journal_entries WHERE kind = 'settle' AND setlym = '2026-11'")[0][0]
    tamper(url, "UPDATE postings SET amount_fen = amount_fen + 7 WHERE posting_no = "
                f"(SELECT MIN(posting_no) FROM postings WHERE entry_no = {changed})")
    checkpoints = query(url, "SELECT COUNT(*) FROM chain_checkpoints")[0][0]
    result = clear(url, "44", "2026-11", NOV_CLEARING_CLOCK)
    assert result.outcome is Outcome.BREAKS
    named = [b for b in result.breaks["breaks"] if b["kind"] == "journal_entry"]
    assert [b["where"].split(" (")[0] for b in named] == [f"entry {changed}"], result.breaks
    assert "hash does not match" in named[0]["detail"]
    assert query(url, "SELECT COUNT(*) FROM chain_checkpoints")[0][0] == checkpoints
    assert query(url, "SELECT COUNT(*) FROM clearing_runs WHERE period = '2026-11'")[0][0] == 0


def test_a_change_behind_a_checkpoint_is_seen_by_its_months_sums_and_named_by_verify(cleared_october: str,
                                                                                      tmp_path: Path) -> None:
    url = cleared_october
    # an October settlement treated in Hebei (province 13, not cleared yet), behind its chain's checkpoint
    changed, posting = query(
        url, "SELECT e.entry_no, MIN(p.posting_no) FROM journal_entries e JOIN postings p ON p.entry_no = e.entry_no "
             "JOIN chain_checkpoints c ON c.chain_id = e.chain_id AND e.entry_no <= c.entry_no "
             "WHERE e.kind = 'settle' AND left(p.book, 2) = '13' GROUP BY e.entry_no ORDER BY e.entry_no LIMIT 1")[0]
    tamper(url, f"UPDATE postings SET amount_fen = amount_fen + 7 WHERE posting_no = {posting}")

    hebei = clear(url, "13", "2026-10", OCT_CLEARING_CLOCK)
    assert hebei.outcome is Outcome.BREAKS  # the month's sums in the database see it
    assert hebei.entries_verified == 1  # the entries were not reread: only the clearing entry since
    assert {b["kind"] for b in hebei.breaks["breaks"]} >= {"settlement_postings"}, hebei.breaks

    november(url, tmp_path)  # another month clears: its run does not reread October's entries
    assert clear(url, "44", "2026-11", NOV_CLEARING_CLOCK).outcome is Outcome.CLEARED
    code, report = verify(url)  # the full check names it
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == changed
    assert "hash does not match" in report["first_bad_entry"]["problem"]


def test_a_changed_checkpoint_is_a_break_and_every_entry_is_checked_again(cleared_october: str,
                                                                          tmp_path: Path) -> None:
    url = cleared_october
    november(url, tmp_path)
    tamper(url, "UPDATE chain_checkpoints SET setl_no = setl_no + 1 "
                "WHERE (chain_id, entry_no) = (SELECT chain_id, entry_no FROM chain_checkpoints LIMIT 1)")
    result = clear(url, "44", "2026-11", NOV_CLEARING_CLOCK)
    assert result.outcome is Outcome.BREAKS
    assert any(b["kind"] == "checkpoint" and "checkpoint was changed" in b["detail"]
               for b in result.breaks["breaks"]), result.breaks
    assert result.entries_verified == query(url, "SELECT COUNT(*) FROM journal_entries")[0][0]


def test_a_ledger_written_at_schema_version_1_clears_after_the_upgrade(pg_url: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as old_release:  # the release before checkpoints writes the month
        real = migrations.steps
        old_release.setattr(migrations, "steps", lambda backend: real(backend)[:1])
        writes_only_columns_it_finds(old_release)  # visit_log as step 1 made it
        month_of_traffic(pg_url, tmp_path)
    assert query(pg_url, "SELECT MAX(version) FROM schema_version") == [(1,)]
    with pytest.raises(migrations.SchemaVersionError, match="db upgrade"):
        PostgresClearingStore(pg_url)
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--db", pg_url])
    current = len(migrations.steps("postgres"))
    assert upgraded.exit_code == 0 and f"from version 1 to {current}" in upgraded.output, upgraded.output

    entries = query(pg_url, "SELECT COUNT(*) FROM journal_entries")[0][0]
    result = clear(pg_url, "44", "2026-10", OCT_CLEARING_CLOCK)
    assert result.outcome is Outcome.CLEARED, result.breaks
    assert result.entries_verified == entries
    assert query(pg_url, UNCOVERED)[0][0] == 1
    code, report = verify(pg_url)
    assert code == 0, report

"""Every schema step of this release, on each backend, applied by `medsettle
db upgrade` to a ledger that a real server wrote at the step before: no row
of any table is lost or changed, the journal still verifies, and the server
settles on the upgraded ledger. A step that fails midway leaves the ledger
exactly as it was, at the version before (each step is one transaction with
its schema_version row). A step added later is checked the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

import psycopg
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clock import FixedClock
from medsettle.ledger.storage import migrations
from medsettle.ledger.storage.migrations import Step

from conftest import SETTLE_AT, make_bill, serving_sample
from tests.e2e.test_clearing_postgres import month_of_traffic

STEPS = {backend: migrations.current_version(backend) for backend in migrations.BACKENDS}
LATER_STEPS = [(backend, version) for backend, count in sorted(STEPS.items()) for version in range(2, count + 1)]
FAILING = "CREATE TABLE schema_version (version INTEGER);"  # fails on both backends: the table exists


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def contents(db: str) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows, sorted (the schema's objects too on SQLite)."""
    if db.startswith("postgresql"):
        with psycopg.connect(db) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
            found = {table: sorted(map(repr, conn.execute(f'SELECT * FROM "{table}"'))) for table in tables}
            found["(schema)"] = sorted(map(repr, conn.execute(
                "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal "
                "UNION ALL SELECT 'sequence', sequencename, '' FROM pg_sequences WHERE schemaname = current_schema()")))
            return found
    with sqlite3.connect(db) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]
        found = {table: sorted(map(repr, conn.execute(f'SELECT * FROM "{table}"'))) for table in tables}
        found["(schema)"] = sorted(map(repr, conn.execute("SELECT type, name, sql FROM sqlite_master")))
        return found


def version(db: str) -> int:
    if db.startswith("postgresql"):
        with psycopg.connect(db) as conn:
            return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


@pytest.fixture
def ledger_before(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], str]:
    """A ledger a real server wrote (a month of traffic) at schema version `before`."""
    def make(backend: str, before: int) -> str:
        db = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "ledger.db")
        with monkeypatch.context() as older_release:
            real = migrations.steps
            older_release.setattr(migrations, "steps", lambda b: real(b)[:before])
            month_of_traffic(db, tmp_path)
        assert version(db) == before
        return db
    return make


@pytest.mark.parametrize(("backend", "step"), LATER_STEPS)
def test_a_step_keeps_every_row_and_the_ledger_settles_on(backend: str, step: int, ledger_before, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db = ledger_before(backend, step - 1)
    before = contents(db)
    with monkeypatch.context() as this_step:  # the release with steps up to `step`
        real = migrations.steps
        this_step.setattr(migrations, "steps", lambda b: real(b)[:step] if b == backend else real(b))
        code, out = invoke("db", "upgrade", "--db", db)
        assert code == 0 and f"to {step}" in out, out
    assert version(db) == step
    after = contents(db)
    for table, rows in before.items():
        if table == "(schema)":
            continue
        if table == "schema_version":  # the earlier steps' rows stay; the step adds its own
            assert set(rows) < set(after[table]), after[table]
        else:
            assert after[table] == rows, f"{table}: rows lost, added or changed by step {step}"
    if step == STEPS[backend]:  # the current release serves it: more traffic, then the whole journal verifies
        with serving_sample(db, tmp_path, FixedClock(SETTLE_AT)) as client:
            assert client.settle(make_bill(msgid="AFTER-UPGRADE")).setl_id
        code, out = invoke("verify", "--db", db)
        assert code == 0, out


@pytest.mark.parametrize(("backend", "step"), LATER_STEPS)
def test_a_step_that_fails_midway_leaves_the_ledger_as_it_was(backend: str, step: int, ledger_before,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db = ledger_before(backend, step - 1)
    before = contents(db)
    real = migrations.steps

    def failing(b: str) -> list[Step]:
        found = real(b)[:step]
        if b != backend:
            return real(b)
        last = found[-1]
        return [*found[:-1], Step(last.version, last.name, f"{last.sql}\n{FAILING}\n")]

    monkeypatch.setattr(migrations, "steps", failing)
    code, out = invoke("db", "upgrade", "--db", db)
    assert code == 1 and "already exists" in out and out.startswith("Error: --db: "), out  # one line, no traceback
    assert version(db) == step - 1
    assert contents(db) == before  # no table, index, trigger or row of the step was left behind

"""Every schema step of this release, on each backend, applied by `medsettle
db upgrade` to a ledger that a real server wrote at the step before: no row
of any table is lost or changed, the journal still verifies, and the server
settles on the upgraded ledger. A step that fails midway leaves the ledger
exactly as it was, at the version before (each step is one transaction with
its schema_version row). A step added later is checked the same way."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Callable

import psycopg
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clock import FixedClock
from medsettle.ledger.storage import migrations
from medsettle.ledger.storage.internet_state import SqliteInternetState
from medsettle.ledger.storage.migrations import Step
from medsettle.ledger.storage.postgres import PostgresInternetState

from conftest import SETTLE_AT, make_bill, serving_sample
from tests.e2e.test_clearing_postgres import month_of_traffic

STEPS = {backend: migrations.current_version(backend) for backend in migrations.BACKENDS}
LATER_STEPS = [(backend, version) for backend, count in sorted(STEPS.items()) for version in range(2, count + 1)]
FAILING = "CREATE TABLE schema_version (version INTEGER);"  # fails on both backends: the table exists


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _rows(conn, table: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """A table's rows, each as its columns by name, in a fixed order (a step may add a column)."""
    cursor = conn.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cursor.description]
    return sorted((dict(zip(names, row)) for row in cursor), key=repr)


# Each column a schema step adds to a table that has rows, with the default
# every existing row must get (a new step's column must be listed here).
ADDED_DEFAULTS: dict[tuple[str, str], object] = {
    ("visit_log", "line_facts"): "",
    ("visit_log", "pharmacist_id"): "",
}


def _same_rows(table: str, before: list[dict[str, object]], after: list[dict[str, object]]) -> bool:
    """The rows of `before`, each with the same value in every column it had;
    a column a step added holds its declared default in every row."""
    added = {name for row in after for name in row} - {name for row in before for name in row}
    for name in added:
        assert (table, name) in ADDED_DEFAULTS, f"{table}.{name}: a step added it; list its default in ADDED_DEFAULTS"
        if any(row[name] != ADDED_DEFAULTS[table, name] for row in after):
            return False
    return sorted(({k: v for k, v in row.items() if k not in added} for row in after), key=repr) == before


def contents(db: str) -> dict[str, list[object]]:
    """Every table's rows, sorted (the schema's objects too on SQLite)."""
    if db.startswith("postgresql"):
        with psycopg.connect(db) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
            found = {table: _rows(conn, table) for table in tables}
            found["(schema)"] = sorted(map(repr, conn.execute(
                "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal "
                "UNION ALL SELECT 'sequence', sequencename, '' FROM pg_sequences WHERE schemaname = current_schema()")))
            return found
    with sqlite3.connect(db) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]
        found = {table: _rows(conn, table) for table in tables}
        found["(schema)"] = sorted(map(repr, conn.execute("SELECT type, name, sql FROM sqlite_master")))
        return found


def version(db: str) -> int:
    if db.startswith("postgresql"):
        with psycopg.connect(db) as conn:
            return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


_INSERT = re.compile(r"^(\w+) \(([^)]*)\)$")  # what _insert is given: "table (columns)"


def _writes_only_columns_it_finds(older_release: pytest.MonkeyPatch) -> None:
    """The Internet+ state's inserts leave out the columns a later step adds
    (visit_log's line_facts and pharmacist_id, step 3): what the release at
    the older version wrote, so this release's server can write that ledger."""
    for state in (SqliteInternetState, PostgresInternetState):
        def older_insert(self, into: str, width: int, rows: list, real=state._insert) -> None:  # type: ignore[no-untyped-def]
            table, columns = _INSERT.match(into).groups()  # type: ignore[union-attr]
            names = [c.strip() for c in columns.split(",")]
            found = {d[0] for d in self._conn.execute(f"SELECT * FROM {table} LIMIT 0").description}
            kept = [i for i, name in enumerate(names) if name in found]
            real(self, f"{table} ({', '.join(names[i] for i in kept)})", len(kept),
                 [tuple(row[i] for i in kept) for row in rows])
        older_release.setattr(state, "_insert", older_insert)


@pytest.fixture
def ledger_before(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], str]:
    """A ledger a real server wrote (a month of traffic) at schema version `before`."""
    def make(backend: str, before: int) -> str:
        db = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "ledger.db")
        with monkeypatch.context() as older_release:
            real = migrations.steps
            older_release.setattr(migrations, "steps", lambda b: real(b)[:before])
            _writes_only_columns_it_finds(older_release)
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
            assert set(map(repr, rows)) < set(map(repr, after[table])), after[table]
        else:
            assert _same_rows(table, rows, after[table]), f"{table}: rows lost, added or changed by step {step}"
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

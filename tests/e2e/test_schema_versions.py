"""Versioned schema on both backends: `medsettle db upgrade` creates or
migrates; commands refuse a schema of another version with a clear message
and exit status 1; a ledger from before versioning keeps working."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.storage import migrations
from medsettle.ledger.storage.migrations import Step, on_postgres, on_sqlite
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

from pg_server import PostgresServer


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def sqlite_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


SQLITE = migrations.current_version("sqlite")  # this release's SQLite schema version
POSTGRES = migrations.current_version("postgres")  # and its PostgreSQL one


@pytest.fixture
def with_step_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """This release as if it had one more schema step on both backends."""
    real = migrations.steps

    def steps(backend: str) -> list[Step]:
        found = real(backend)
        return [*found, Step(len(found) + 1, "meta_note", "ALTER TABLE meta ADD COLUMN note TEXT;")]

    monkeypatch.setattr(migrations, "steps", steps)


# ---- SQLite ----------------------------------------------------------------
def test_upgrade_creates_a_fresh_sqlite_file_at_the_current_version(tmp_path: Path) -> None:
    db = tmp_path / "new" / "ledger.db"
    code, out = run("db", "upgrade", "--db", str(db))
    assert code == 0 and f"created the ledger schema at version {SQLITE}" in out
    assert sqlite_version(db) == SQLITE
    code, out = run("db", "upgrade", "--db", str(db))
    assert code == 0 and f"already at version {SQLITE}" in out


def test_serving_opens_an_empty_file_without_an_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    SqliteLedgerStore(db).close()
    assert sqlite_version(db) == SQLITE


def test_a_writable_open_creates_what_a_step_creates_if_missing(tmp_path: Path) -> None:
    """A table added to a step's CREATE ... IF NOT EXISTS statements after a
    file recorded that step is there once a writer opens the file."""
    db = tmp_path / "ledger.db"
    SqliteLedgerStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE audit_flags")
    SqliteLedgerStore(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_flags").fetchone() == (0,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'audit_flags_append_only_u'").fetchone()
    assert sqlite_version(db) == SQLITE


def test_a_ledger_from_before_versioning_is_version_1_and_upgrades(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(migrations.steps("sqlite")[0].sql)  # today's layout, no schema_version table
    conn.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
    conn.commit()
    conn.close()
    code, out = run("db", "version", "--db", str(db))
    assert code == 0 and "schema version 1 (sqlite)" in out
    code, out = run("db", "upgrade", "--db", str(db))
    assert code == 0, out
    code, out = run("verify", "--db", str(db))
    assert code == 0, out
    SqliteLedgerStore(db).close()
    assert sqlite_version(db) == SQLITE
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT value FROM meta WHERE key = 'kept'").fetchone() == ("yes",)


def test_an_older_sqlite_schema_is_refused_until_db_upgrade(tmp_path: Path, with_step_two: None) -> None:
    db = tmp_path / "ledger.db"
    conn = sqlite3.connect(db, isolation_level=None)
    on_sqlite.upgrade(conn, str(db), through=SQLITE)
    conn.close()
    for command in (["balances"], ["verify"], ["credentials", "list"]):
        code, out = run(*command, "--db", str(db))
        assert code == 1, (command, out)
        assert f"schema version {SQLITE}, this medsettle needs version {SQLITE + 1}" in out
        assert "medsettle db upgrade" in out and "Traceback" not in out
    with pytest.raises(migrations.SchemaVersionError, match="db upgrade"):
        SqliteLedgerStore(db)
    code, out = run("db", "upgrade", "--db", str(db))
    assert code == 0 and f"from version {SQLITE} to {SQLITE + 1}" in out
    with sqlite3.connect(db) as check:
        assert "note" in [row[1] for row in check.execute("PRAGMA table_info(meta)")]
    SqliteLedgerStore(db).close()


def test_a_newer_sqlite_schema_is_never_touched(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    SqliteLedgerStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version (version, name, applied_us) VALUES (7, 'future', 0)")
    for command in (["balances"], ["db", "upgrade"]):
        code, out = run(*command, "--db", str(db))
        assert code == 1 and "schema version 7, newer than this medsettle knows" in out, (command, out)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (7,)


def test_serve_refuses_a_newer_schema_with_exit_1_and_no_traceback(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    SqliteLedgerStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version (version, name, applied_us) VALUES (?, 'future', 0)", (SQLITE + 1,))
    done = subprocess.run([sys.executable, "-m", "medsettle", "serve", "--db", str(db), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "newer than this medsettle knows" in done.stderr and "Traceback" not in done.stderr


# ---- PostgreSQL --------------------------------------------------------------
def pg_tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_upgrade_creates_the_postgres_schema(pg_url: str) -> None:
    code, out = run("db", "upgrade", "--db", pg_url)
    assert code == 0 and f"created the ledger schema at version {POSTGRES} (postgres)" in out
    assert {"settlements", "journal_entries", "postings", "persons", "person_years", "chain_heads",
            "credentials", "clearing_runs", "host_quota_use", "rx_fills", "ecert_nonces", "visit_log",
            "audit_flags", "chain_checkpoints", "schema_version"} <= pg_tables(pg_url)
    code, out = run("db", "upgrade", "--db", pg_url)
    assert code == 0 and f"already at version {POSTGRES}" in out
    code, out = run("db", "version", "--db", pg_url)
    assert f"schema version {POSTGRES} (postgres); this release needs {POSTGRES}" in out


def _insert_settlement(conn: psycopg.Connection, setl_no: int, msgid: str, kind: int = 1, orig: str = "") -> None:
    amounts = [0] * 12
    conn.execute(
        "INSERT INTO settlements VALUES (%s, %s, 'H1', %s, 'f', %s, %s, 'P1', 310, '440100', '440100', 11, 1, 0, "
        "'2026-10', " + ", ".join(["%s"] * 12) + ", 0, '[]', '', 'H1')",
        (setl_no, f"S{setl_no}", msgid, kind, orig, *amounts),
    )


def test_postgres_schema_keeps_the_sqlite_guarantees(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        on_postgres.open_writable(conn, "test")
        _insert_settlement(conn, 1, "M1")
        with pytest.raises(psycopg.errors.UniqueViolation, match="settlements_idempotency_key"):
            _insert_settlement(conn, 2, "M1")
        _insert_settlement(conn, 3, "R1", kind=2, orig="S1")
        with pytest.raises(psycopg.errors.UniqueViolation, match="settlements_one_reversal"):
            _insert_settlement(conn, 4, "R2", kind=2, orig="S1")
        for statement in ("UPDATE settlements SET msgid = 'X'", "DELETE FROM settlements", "TRUNCATE settlements"):
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO persons VALUES ('P1', 'n', 310, '440100', -1)")
        big = 10**15  # fen beyond 32 bits
        conn.execute("INSERT INTO postings (entry_no, setlym, book, account, amount_fen) VALUES (1, '2026-10', 'b', 'a', %s)",
                     (big,))
        assert conn.execute("SELECT amount_fen FROM postings").fetchone() == (big,)


def test_two_servers_creating_the_schema_at_once_create_it_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                barrier.wait(10)
                on_postgres.open_writable(conn, "test")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(v,) for v in range(1, POSTGRES + 1)]


def test_an_older_postgres_schema_is_refused_until_db_upgrade(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        on_postgres.open_writable(conn, "test")
    real = migrations.steps
    monkeypatch.setattr(migrations, "steps", lambda backend: [
        *real(backend), Step(POSTGRES + 1, "meta_note", "ALTER TABLE meta ADD COLUMN note TEXT;")])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(migrations.SchemaVersionError,
                           match=f"version {POSTGRES}, this medsettle needs version {POSTGRES + 1}"):
            on_postgres.open_writable(conn, "test")
    code, out = run("db", "upgrade", "--db", pg_url)
    assert code == 0 and f"from version {POSTGRES} to {POSTGRES + 1}" in out
    with psycopg.connect(pg_url, autocommit=True) as conn:
        on_postgres.open_writable(conn, "test")
        conn.execute("INSERT INTO meta (key, value, note) VALUES ('k', 'v', 'n')")


def test_a_newer_postgres_schema_is_never_touched(pg_url: str) -> None:
    run("db", "upgrade", "--db", pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (5, 'future', 0)")
    code, out = run("db", "upgrade", "--db", pg_url)
    assert code == 1 and "schema version 5, newer than this medsettle knows" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("problem", ["wrong password", "unreachable host", "bad URL", "no such database"])
def test_a_database_that_cannot_be_reached_is_named_with_exit_1(pg_server: PostgresServer, problem: str) -> None:
    url, expected = {
        "wrong password": (pg_server.url("postgres", password="not-the-password"), "password authentication failed"),
        "unreachable host": ("postgresql://postgres:pw@127.0.0.1:1/ledger?connect_timeout=2", "cannot connect"),
        "bad URL": ("postgresql://postgres@127.0.0.1:5432/ledger?sslmode=bogus&nonsense=1", "not a valid PostgreSQL URL"),
        "no such database": (pg_server.url("no_such_db"), 'database "no_such_db" does not exist'),
    }[problem]
    code, out = run("db", "upgrade", "--db", url)
    assert code == 1, out
    assert expected in out and "Traceback" not in out
    assert "not-the-password" not in out and pg_server.password not in out


def test_the_period_index_stays_covering_across_writable_opens_and_upgrades(tmp_path: Path) -> None:
    """Step 2 makes postings_by_period_book covering under its old name, step
    4 puts it in entry order within each account, under the same name: step
    1's CREATE INDEX IF NOT EXISTS, run again by every writable open, must
    not bring the narrow one back beside it (clearing reads the covering one;
    the writer would maintain both)."""
    def postings_indexes(db: Path) -> list[str]:
        with sqlite3.connect(db) as conn:
            return sorted(" ".join(sql.split()) for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'postings' AND sql IS NOT NULL"))

    covering = ["CREATE INDEX postings_by_entry ON postings (entry_no)",
                "CREATE INDEX postings_by_period_book ON postings (setlym, book, account, entry_no, amount_fen)"]
    fresh = tmp_path / "fresh.db"
    SqliteLedgerStore(fresh).close()
    SqliteLedgerStore(fresh).close()
    assert postings_indexes(fresh) == covering
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    on_sqlite.upgrade(conn, str(old), through=1)
    conn.close()
    assert "setlym, book, account)" in " ".join(postings_indexes(old))
    assert run("db", "upgrade", "--db", str(old))[0] == 0
    SqliteLedgerStore(old).close()
    assert postings_indexes(old) == covering

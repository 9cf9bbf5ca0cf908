"""Schema versions on an SQLite file (the rules: migrations/__init__.py)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Iterator

from medsettle.ledger.storage.migrations import VERSION_TABLE_SQL, Step, check, current_version, now_us, pending

BACKEND = "sqlite"


@dataclass(frozen=True, slots=True)
class Found:
    version: int  # 0: an empty database
    versioned: bool  # False: no schema_version table (empty, or a ledger from before versioning)


def found(conn: sqlite3.Connection) -> Found:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        return Found(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0], True)
    return Found(1 if "journal_entries" in tables else 0, False)


def version(conn: sqlite3.Connection) -> int:
    """The schema version of the file (0: no ledger in it)."""
    return found(conn).version


def statements(sql: str) -> Iterator[str]:
    """The script's statements one by one (a trigger's body stays whole), so a
    step runs inside one transaction (executescript would commit first)."""
    pending_text = ""
    for line in sql.splitlines(keepends=True):
        pending_text += line
        if sqlite3.complete_statement(pending_text):
            if pending_text.strip():
                yield pending_text
            pending_text = ""
    if pending_text.strip() and not pending_text.strip().startswith("--"):
        yield pending_text


def _apply(conn: sqlite3.Connection, steps: list[Step]) -> None:
    for step in steps:
        for statement in statements(step.sql):
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO schema_version (version, name, applied_us) VALUES (?, ?, ?)",
                     (step.version, step.name, now_us()))


def upgrade(conn: sqlite3.Connection, label: str, *, through: int | None = None) -> tuple[int, int]:
    """Brings the schema to version `through` (default: the current one), each
    step in the same transaction as its schema_version row; (before, after).
    A ledger from before versioning re-runs step 1, whose statements all say
    IF NOT EXISTS: it only adds what an older layout lacks, then records 1."""
    target = current_version(BACKEND) if through is None else through
    conn.execute("BEGIN IMMEDIATE")
    try:
        state = found(conn)  # under the write lock: another process may have upgraded meanwhile
        if state.version > current_version(BACKEND):
            check(BACKEND, state.version, label)
        conn.execute(VERSION_TABLE_SQL)
        start = state.version if state.versioned else 0
        _apply(conn, [step for step in pending(BACKEND, start) if step.version <= target])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return state.version, max(state.version, target)


def open_writable(conn: sqlite3.Connection, label: str) -> None:
    """For a command that writes: an empty file gets the current schema, a
    ledger from before versioning is recorded as version 1; then the version
    must be the current one (SchemaVersionError otherwise)."""
    state = found(conn)
    if state.version == 0:
        upgrade(conn, label)
    elif not state.versioned:
        upgrade(conn, label, through=1)
    check(BACKEND, found(conn).version, label)
    ensure_created(conn)


_CREATE_IF_MISSING = re.compile(r"CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|TRIGGER)\s+IF\s+NOT\s+EXISTS\b", re.IGNORECASE)


def ensure_created(conn: sqlite3.Connection) -> None:
    """Re-runs the `CREATE ... IF NOT EXISTS` statements of every step, as
    every writable open did before schema versions: a table or index added
    to a step after a file recorded that step is created, nothing else
    changes (what a step alters stays with `medsettle db upgrade`)."""
    for step in pending(BACKEND, 0):
        for statement in statements(step.sql):
            code = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))
            if _CREATE_IF_MISSING.match(code.strip()):
                conn.execute(statement)


def check_readable(conn: sqlite3.Connection, label: str) -> None:
    """For a read-only command: the version must be the current one."""
    check(BACKEND, found(conn).version, label)

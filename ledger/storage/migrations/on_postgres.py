"""Schema versions on PostgreSQL (the rules: migrations/__init__.py).

Several servers may start at once on an empty database: creating and
upgrading hold a session advisory lock around a transaction that re-reads
the version (a transaction started after the lock was granted sees the
catalog as the previous holder committed it), so exactly one creates the
schema."""

from __future__ import annotations

from typing import Any

from medsettle.ledger.storage.migrations import (
    VERSION_TABLE_SQL,
    SchemaVersionError,
    check,
    current_version,
    now_us,
    pending,
)

BACKEND = "postgres"
SCHEMA_LOCK_KEY = 0x6D656473  # pg_advisory_lock key while creating or upgrading the schema


class EmptyDatabase(Exception):
    """A read-only command found no ledger in the database."""


def version(conn: Any) -> int:
    """The schema version of the database (0: no ledger in it)."""
    version_table, journal = conn.execute(
        "SELECT to_regclass('schema_version'), to_regclass('journal_entries')").fetchone()
    if version_table is not None:
        return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    if journal is not None:
        raise SchemaVersionError("the database has a journal_entries table but no schema_version table: "
                                 "it is no medsettle ledger this release knows; refusing to touch it")
    return 0


def upgrade(conn: Any, label: str) -> tuple[int, int]:
    """Brings the schema to the current version, each step with its
    schema_version row in one transaction; (before, after). `conn` is in
    autocommit mode (the transaction is this function's)."""
    conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
    try:
        with conn.transaction():
            before = version(conn)
            if before > current_version(BACKEND):
                check(BACKEND, before, label)
            conn.execute(VERSION_TABLE_SQL)
            for step in pending(BACKEND, before):
                conn.execute(step.sql)
                conn.execute("INSERT INTO schema_version (version, name, applied_us) VALUES (%s, %s, %s)",
                             (step.version, step.name, now_us()))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
    return before, max(before, current_version(BACKEND))


def open_writable(conn: Any, label: str) -> None:
    """For a command that writes: an empty database gets the current schema;
    a non-empty one must be at the current version (never migrated here)."""
    if version(conn) == 0:
        upgrade(conn, label)
    check(BACKEND, version(conn), label)


def check_readable(conn: Any, label: str) -> None:
    """For a read-only command: a ledger at the current version."""
    found = version(conn)
    if found == 0:
        raise EmptyDatabase(f"{label} holds no medsettle ledger (no schema_version table)")
    check(BACKEND, found, label)

"""Which backend holds a ledger, chosen by how `--db` names it: a
`postgresql://` (or `postgres://`) URL is PostgreSQL, anything else a SQLite
file path. `MEDSETTLE_DB` in the environment is the default of every `--db`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsettle.ledger.storage.port import LedgerStore

DB_ENV = "MEDSETTLE_DB"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class BackendUnavailable(Exception):
    """The backend that --db names cannot be used by this installation."""


def is_postgres(db: str | Path) -> bool:
    return str(db).startswith(POSTGRES_SCHEMES)


def open_ledger(db: str | Path, *, read_only: bool = False) -> LedgerStore:
    """The ledger named by db. read_only: nothing can be written and nothing
    is created (NotALedgerError if it holds no ledger)."""
    if is_postgres(db):
        try:
            from medsettle.ledger.storage import postgres  # type: ignore[attr-defined]
        except ImportError as error:
            raise BackendUnavailable(f"PostgreSQL ledgers are not available here ({error})") from None
        return postgres.open_postgres_ledger(str(db), read_only=read_only)  # type: ignore[no-any-return]
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    return SqliteLedgerStore(db, read_only=read_only)


def connect_read_only(db: str | Path) -> Any:
    """A read-only connection to the ledger for the commands that run their
    own (portable) SQL with `?` marks: sqlite3's on a file, or a PostgreSQL
    one taking the same calls (NotALedgerError if it holds no ledger)."""
    if is_postgres(db):
        from medsettle.ledger.storage.postgres import connect_qmark

        return connect_qmark(str(db), read_only=True)
    from medsettle.ledger.storage.sqlite import connect_read_only as sqlite_read_only

    return sqlite_read_only(db)


def shown(db: str | Path) -> str:
    """--db as messages may show it: a URL without its password."""
    if is_postgres(db):
        from medsettle.ledger.storage.pg_connect import describe

        return describe(str(db))
    return str(db)


def make_room_for(db: str | Path) -> None:
    """Creates the folder of a SQLite ledger file (the CLI's default is var/)."""
    if not is_postgres(db):
        Path(db).parent.mkdir(parents=True, exist_ok=True)

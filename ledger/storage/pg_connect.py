"""PostgreSQL URLs: recognising them, naming them without the password, and
connecting with an error that says what is wrong (bad URL, wrong password,
unreachable host) instead of a driver traceback."""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT_S = 10


class DatabaseConnectError(Exception):
    """The database named by --db cannot be reached or refuses us (the message says why)."""


def describe(url: str) -> str:
    """The URL as it may be printed: user, host, port and database, never the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is named by its scheme only
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def connect_options(url: str) -> dict[str, Any]:
    """Checks the URL's form; the keyword arguments every connection uses."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise DatabaseConnectError(f"--db: not a valid PostgreSQL URL ({error})") from None
    return {"conninfo": url, "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "medsettle"}


def connect(url: str, **kwargs: Any) -> Any:
    """A psycopg connection; DatabaseConnectError naming the problem if it cannot be made."""
    import psycopg

    options = connect_options(url)
    try:
        conn = psycopg.connect(options.pop("conninfo"), **options, **kwargs)
    except psycopg.OperationalError as error:
        raise DatabaseConnectError(f"--db {describe(url)}: cannot connect: {_first_line(error)}") from None
    configure(conn)
    return conn


def configure(conn: Any) -> None:
    """Money sums come back as int: SUM over BIGINT fen is NUMERIC in
    PostgreSQL (a Decimal to psycopg), always a whole number of fen here, so
    the SQL shared with SQLite needs no casts. Statements are prepared on
    the server as psycopg does by default (from a statement's fifth run; a
    pipelined executemany's at once): without, PostgreSQL parses and plans
    every statement of every batch (measured on one server: 1.4 to 1.9
    times the database CPU per settlement under unary load, 2.3 to 2.4
    times with SettleBatchStream). A transaction that failed must end with
    postgres.end_keeping_prepared or conn.rollback(), never a ROLLBACK
    statement alone (end_keeping_prepared says why)."""
    from psycopg.types.numeric import IntLoader

    conn.adapters.register_loader("numeric", IntLoader)


def _first_line(error: Exception) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__

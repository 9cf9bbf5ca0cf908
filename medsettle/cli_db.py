"""`medsettle db upgrade|version --db DB`: the ledger's schema version, and
creating or migrating it (SQLite file or PostgreSQL URL); `medsettle db
unfence`: a SQLite ledger fenced after a failed fsync, taken back into
service once the runbook was followed (ledger/storage/fence.py)."""

from __future__ import annotations

from pathlib import Path

import click

from medsettle.ledger.storage.migrations import current_version

db_option = click.option("--db", default="var/medsettle.db", show_default=True, envvar="MEDSETTLE_DB",
                         help="SQLite database file, or a postgresql:// URL (env MEDSETTLE_DB).")


@click.group()
def db() -> None:
    """The ledger's schema: its version, creating or migrating it."""


@db.command()
@db_option
def upgrade(db: str) -> None:
    """Create the schema in an empty database, or migrate an older one to this
    release's version (each step in one transaction). Back up first."""
    before, after, backend = _with_connection(db, _upgrade)
    if before == after:
        click.echo(f"schema already at version {after} ({backend}); nothing to do")
    elif before == 0:
        click.echo(f"created the ledger schema at version {after} ({backend})")
    else:
        click.echo(f"upgraded the ledger schema from version {before} to {after} ({backend})")


@db.command()
@db_option
def version(db: str) -> None:
    """Print the database's schema version and the one this release needs."""
    found, _, backend = _with_connection(db, _found)
    needed = current_version(backend)
    click.echo(f"schema version {found} ({backend}); this release needs {needed}")


@db.command()
@db_option
@click.option("--after-remount", is_flag=True,
              help="The file system was unmounted and mounted again since the fence (the page cache dropped "
                   "without a reboot); without it, unfence refuses within the boot that fenced.")
def unfence(db: str, after_remount: bool) -> None:
    """Take a SQLite ledger fenced after a failed fsync of its WAL back into
    service: removes the marker beside it. Only after the runbook
    (docs/operations.md): the disk and kernel log checked, the page cache
    dropped (reboot, or unmount and mount), `medsettle verify` clean."""
    from medsettle.ledger.storage.backends import is_postgres, shown
    from medsettle.ledger.storage.fence import RUNBOOK, boot_id, fenced, marker_path, unfence as remove_marker

    if is_postgres(db):  # named without its password, as every message names a URL
        click.echo(f"{shown(db)} is a PostgreSQL ledger: never fenced (its server stops on a failed fsync itself); "
                   "nothing to do")
        return
    record = fenced(db)
    if record is None:
        click.echo(f"{db} is not fenced (no {marker_path(db)}); nothing to do")
        return
    fenced_boot = str(record.get("boot_id", ""))
    # a marker that does not name its boot (written short on the failing disk) may be of this one
    if (not fenced_boot or fenced_boot == boot_id()) and not after_remount:
        when = "in this boot" if fenced_boot else "perhaps in this boot (its marker does not say)"
        raise click.ClickException(
            f"{db} was fenced {when} ({record.get('why', 'a failed fsync')}, at {record.get('at', '?')}): "
            f"the page cache may still hold what the failed fsync lost. Reboot, or unmount and mount its file "
            f"system and give --after-remount; run `medsettle verify --db {db}` first ({RUNBOOK})")
    remove_marker(db)
    click.echo(f"unfenced {db}: removed {marker_path(db)} (fenced at {record.get('at', '?')}: "
               f"{record.get('why', '')}); `medsettle serve` may open it again")


def _runner(backend: str):  # type: ignore[no-untyped-def]
    """The backend's migration module (on_sqlite or on_postgres)."""
    from medsettle.ledger.storage.migrations import on_postgres, on_sqlite

    return on_postgres if backend == "postgres" else on_sqlite


def _upgrade(conn: object, backend: str, label: str) -> tuple[int, int]:
    return _runner(backend).upgrade(conn, label)  # type: ignore[no-any-return]


def _found(conn: object, backend: str, label: str) -> tuple[int, int]:
    return _runner(backend).version(conn), 0


def _with_connection(db: str, action):  # type: ignore[no-untyped-def]
    """action(conn, backend, label) on a connection to --db; (result..., backend)."""
    from medsettle.ledger.storage import pg_connect
    from medsettle.ledger.storage.backends import is_postgres

    if is_postgres(db):
        with pg_connect.connect(db, autocommit=True) as conn:
            return (*action(conn, "postgres", pg_connect.describe(db)), "postgres")
    from medsettle.ledger.storage.fence import refuse_if_fenced
    from medsettle.ledger.storage.sqlite import connect

    refuse_if_fenced(db)  # a writable connection: its close would checkpoint the WAL of a fenced ledger
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(db)
    try:
        return (*action(conn, "sqlite", db), "sqlite")
    finally:
        conn.close()

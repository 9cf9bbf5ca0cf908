"""`medsettle backup`: operations on a ledger a server may be running on.
Composition only: the copy is ledger/storage/backup.py."""

from __future__ import annotations

import json

import click

DEFAULT_DB = "var/medsettle.db"


@click.command()
@click.option("--db", default=DEFAULT_DB, show_default=True,
              help="The ledger's SQLite file (read only; a server may be writing to it).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The backup file to write; it must not exist.")
@click.option("--pages-per-step", type=click.IntRange(1, 1 << 20), default=1_024, show_default=True,
              help="Database pages copied per step (the progress bar moves per step).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
def backup(db: str, out: str, pages_per_step: int, as_json: bool) -> None:
    """Copy a live ledger consistently (SQLite's online backup API).

    The copy is the ledger as of one committed transaction, taken while the
    server goes on settling; it is one self-contained file, checked before it
    is put in place. Restore it by stopping the server and putting the file
    in the ledger's place (docs/backup.md); `medsettle verify --db FILE`
    checks it whole."""
    from medsettle.ledger.storage.backends import is_postgres
    from medsettle.ledger.storage.backup import BackupRefused, backup_ledger
    from medsettle.progress import progress_hooks

    if is_postgres(db):
        raise click.BadParameter("backs up a SQLite file; back a PostgreSQL ledger up with pg_dump", param_hint="--db")
    try:
        with progress_hooks("copying the ledger", "pages", quiet=as_json) as hooks:
            result = backup_ledger(db, out, hooks, pages_per_step)
    except BackupRefused as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps({"out": str(result.path), "pages": result.pages, "bytes": result.bytes,
                               "last_entry_no": result.last_entry_no, "head_hash": result.head_hash}, indent=2))
        return
    click.echo(f"backed up {db} to {result.path}: {result.pages} pages ({result.bytes / (1 << 20):.1f} MiB), "
               f"journal up to entry {result.last_entry_no}, head hash {result.head_hash}")

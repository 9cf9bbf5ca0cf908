"""`medsettle credentials issue|revoke|list`: the callers' bearer tokens.

A token is printed once, by `issue`, on stdout alone (so a script can
capture it); the database keeps only its SHA-256. Rotation without restart:
issue a new credential, switch the caller to it, revoke the old one; a
running server picks up both within a few seconds."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

DEFAULT_DB = "var/medsettle.db"
db_option = click.option("--db", envvar="MEDSETTLE_DB", default=DEFAULT_DB, show_default=True, help="The server's ledger: a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
read_only_db_option = click.option("--db", envvar="MEDSETTLE_DB", default=DEFAULT_DB, show_default=True,
                                   help="The server's ledger (read only): a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")


@click.group()
def credentials() -> None:
    """Issue, revoke and list caller credentials (bearer tokens, stored hashed)."""


@credentials.command()
@db_option
@click.option("--role", type=click.Choice(["institution", "operator"]), default="institution", show_default=True,
              help="institution: acts for its own code only; operator: reads across institutions, settles nothing.")
@click.option("--code", "fixmedins_code", default="", help="The institution's fixmedins_code (role institution).")
@click.option("--label", required=True, help="Who holds it, e.g. 'his-gateway-2026'.")
def issue(db: str, role: str, fixmedins_code: str, label: str) -> None:
    """Issue a credential; prints its token once (stdout), its id on stderr.

    The ledger must exist (`medsettle serve` or `load-reference` creates it)
    and an institution code must be in its reference data."""
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.settlement.validation import CODE
    from medsettle.ledger.storage.backends import shown
    from medsettle.ledger.storage.credentials import CredentialError, CredentialStore, Role

    known = _institution_codes(db)
    # A malformed code is the store's refusal (it names the field); a well-formed unknown one is refused here.
    if Role(role) is Role.INSTITUTION and CODE.match(fixmedins_code) and fixmedins_code not in known:
        raise click.BadParameter(f"{fixmedins_code[:40]!r} is no institution in the reference data of {shown(db)}",
                                 param_hint="--code")
    with CredentialStore(db) as store:
        try:
            credential, token = store.issue(Role(role), fixmedins_code, label, SystemClock().now())
        except CredentialError as error:
            raise click.UsageError(str(error)) from None
    who = f"institution {credential.fixmedins_code}" if credential.fixmedins_code else "operator"
    click.echo(f"issued credential {credential.cred_id} ({who}, {label}); the token is shown only now:", err=True)
    click.echo(token)


def _institution_codes(db: str) -> set[str]:
    """The institution codes of the ledger at db; refuses a path without a
    ledger, naming it (nothing is created there)."""
    from medsettle.ledger.service import reference_in_force
    from medsettle.ledger.storage.backends import open_ledger, shown
    from medsettle.ledger.storage.port import NotALedgerError

    try:
        store = open_ledger(db, read_only=True)
    except NotALedgerError as error:
        raise click.ClickException(f"--db: {error}; a ledger is created by `medsettle serve --db {shown(db)}` "
                                   f"or `medsettle load-reference --db {shown(db)} FILE`") from None
    try:
        return set(reference_in_force(store).institutions)
    finally:
        store.close()


@credentials.command()
@db_option
@click.argument("cred_id", type=click.IntRange(1))
def revoke(db: str, cred_id: int) -> None:
    """Revoke a credential; a running server refuses it within seconds."""
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.storage.backends import is_postgres
    from medsettle.ledger.storage.credentials import CredentialError, CredentialStore

    if not is_postgres(db) and not Path(db).exists():
        raise click.ClickException(f"no database at {db}")
    with CredentialStore(db) as store:
        try:
            credential = store.revoke(cred_id, SystemClock().now())
        except CredentialError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"revoked credential {credential.cred_id} ({credential.label})")


@credentials.command("list")
@read_only_db_option
@click.option("--all", "include_revoked", is_flag=True, help="Also revoked credentials.")
def list_credentials(db: str, include_revoked: bool) -> None:
    """List credentials (never their tokens)."""
    from medsettle.ledger.storage.credentials import CredentialStore

    with CredentialStore(db, read_only=True) as store:
        rows = store.list(include_revoked)
    table = Table(title="Credentials")
    for column in ("id", "role", "fixmedins_code", "label", "created", "revoked"):
        table.add_column(column)
    for c in rows:
        table.add_row(str(c.cred_id), c.role.value, c.fixmedins_code, c.label, c.created_at.isoformat(timespec="seconds"),
                      c.revoked_at.isoformat(timespec="seconds") if c.revoked_at else "")
    Console(width=120).print(table)

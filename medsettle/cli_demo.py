"""`medsettle demo`: the demo bills against servers that are already
running on one ledger (scripts/cluster.sh plays it against two).

The whole demo goes to the first server, then again to each other one.
The msgids are fixed, so every later server must answer each bill with the
settlement the first one stored: the idempotency key holds across servers
(nothing is settled twice, whichever server a retry reaches)."""

from __future__ import annotations

import click
from rich.console import Console


@click.command()
@click.option("--db", envvar="MEDSETTLE_DB", required=True,
              help="The servers' ledger (a postgresql:// URL or a SQLite file): the demo's credentials are issued "
                   "there and revoked at the end [env MEDSETTLE_DB].")
@click.option("--target", "targets", multiple=True, required=True, metavar="HOST:PORT",
              help="A running server of that ledger; repeat it for each server.")
def demo(db: str, targets: tuple[str, ...]) -> None:
    """Play the demo bills against running servers of one ledger: all of
    them against the first, then again against each other server, which
    must answer with the settlements the first one stored (exit 1 if not)."""
    from medsettle.cli import _provision_demo, _revoke
    from medsettle.client.demo import DEMO_BILLS, run_demo
    from medsettle.client.settlement_client import CallRefused, SettlementClient

    console = Console(width=max(Console().width, 100))
    credentials = _provision_demo(db)
    stored: list[object] | None = None
    try:
        for target in targets:
            console.print(f"[bold]medsettle demo[/] against {target}")
            with SettlementClient(target, token=credentials.operator_token, tokens=credentials.tokens) as client:
                try:
                    results = run_demo(client, console)
                except CallRefused as error:
                    raise click.ClickException(f"--target {target}: {error}") from None
            # The bills' settlements and the reversal; the pre-settlement stores nothing and is left out.
            settled = results[:len(DEMO_BILLS)] + results[-1:]
            if stored is None:
                stored = settled
                continue
            same = settled == stored
            console.print(f"{target} answered the {len(DEMO_BILLS)} settlements and the reversal of {targets[0]} with the "
                          f"same setl_ids and amounts: {'yes' if same else 'NO'}", soft_wrap=True)
            if not same:
                raise click.ClickException(f"{target} did not answer the demo's msgids with the stored settlements")
    finally:
        _revoke(db, credentials.cred_ids)

"""`medsettle verify --db PATH`: recompute the journal's hash chain and every
balance; report the first bad entry. Exit 0 when intact, 1 otherwise."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help="The ledger to check (read only): a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--since-checkpoint", is_flag=True,
              help="Check only the entries after the newest verified checkpoint (on PostgreSQL: each writer's chain "
                   "after its own) and the checkpoints themselves; see docs/clearing.md for what a checkpoint "
                   "vouches for.")
@click.option("--checkpoint", "record", is_flag=True,
              help="When everything checked verifies, record a checkpoint at the last entry checked (of each chain that "
                   "grew, on PostgreSQL); writes to the ledger.")
def verify(db: str, as_json: bool, since_checkpoint: bool, record: bool) -> None:
    """Check the journal's hash chain, each entry's postings and the balances."""
    from medsettle.ledger.verify import verify_database
    from medsettle.progress import progress_hooks

    with progress_hooks("verifying the journal", "entries", quiet=as_json) as hooks:
        report = verify_database(db, hooks, since_checkpoint=since_checkpoint, record_checkpoint=record)
    first = report.first_bad
    recorded = max(report.recorded, key=lambda checkpoint: checkpoint.entry_no, default=None)
    if as_json:
        click.echo(json.dumps({
            "ok": report.ok, "entries": report.entries, "postings": report.postings, "head_hash": report.head_hash,
            "bad_entries": len(report.bad_entries),
            "first_bad_entry": None if first is None else
            {"entry_no": first.entry_no, "setl_id": first.setl_id, "problem": first.problem},
            "orphan_postings": report.orphan_postings,
            "balance_breaks": [b.detail for b in report.balance_breaks],
            "since_entry_no": report.since_entry_no,
            "since_checkpoints": {str(chain): entry_no for chain, entry_no in sorted(report.since.items())},
            "checkpoint_problems": report.checkpoint_problems,
            "missing_entries": report.missing_entries,
            "recorded_checkpoint": None if recorded is None else {"entry_no": recorded.entry_no, "hash": recorded.hash},
            "recorded_checkpoints": [{"chain": checkpoint.chain, "entry_no": checkpoint.entry_no, "hash": checkpoint.hash}
                                     for checkpoint in report.recorded],
        }, indent=2))
    else:
        after = _after(report.since)
        click.echo(f"checked {report.entries} journal entries{after}, {report.postings} postings; "
                   f"head hash {report.head_hash}")
        for problem in report.checkpoint_problems:
            click.echo(f"BAD CHECKPOINT {problem}; the whole journal was checked")
        for setl_id in report.missing_entries:
            click.echo(f"BAD: settlement {setl_id} has no journal entry")
        if first is not None:
            click.echo(f"FIRST BAD ENTRY {first.entry_no} ({first.setl_id}): {first.problem}")
            click.echo(f"{len(report.bad_entries)} problem(s) in all")
        if report.orphan_postings:
            click.echo(f"BAD: {report.orphan_postings} posting(s) belong to no journal entry")
        for item in report.balance_breaks:
            click.echo(f"BREAK {item.detail}")
        if report.ok:
            click.echo("the hash chain is intact, every entry balances per book, and the balances agree")
        for checkpoint in report.recorded:
            click.echo(f"recorded a checkpoint at entry {checkpoint.entry_no}{_of_chain(checkpoint.chain)}")
    if not report.ok:
        sys.exit(1)


def _after(since: dict[int, int]) -> str:
    """Where the check began: after one chain's checkpoint (SQLite), after each chain's (PostgreSQL)."""
    if list(since) == [0]:
        return f" after the checkpoint at entry {since[0]}"
    return f" after the checkpoints of {len(since)} chain(s)" if since else ""


def _of_chain(chain: int) -> str:
    return f" of chain {chain}" if chain else ""

"""CLI commands of "Internet+" care and fund supervision:
`medsettle ecert issue`, `medsettle export-daily`, `medsettle audit-flags`."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import click

from medsettle.ledger.clock import CHINA_TZ, parse_clock


@click.group()
def ecert() -> None:
    """E-insurance certificates (signed, short-lived QR tokens)."""


@ecert.command("issue")
@click.option("--psn-no", required=True, help="The insured person the token identifies.")
@click.option("--ttl-s", default=300, show_default=True, type=int, help="Lifetime in seconds (at most 600).")
@click.option("--key-file", type=click.Path(dir_okay=False, exists=True),
              help="File holding the hex signing key (default: MEDSETTLE_ECERT_KEY or MEDSETTLE_ECERT_KEY_FILE).")
@click.option("--clock", default="", help="Issue at this ISO time (demo/tests); default: now.")
def ecert_issue(psn_no: str, ttl_s: int, key_file: str | None, clock: str) -> None:
    """Issue an e-insurance certificate token for a person (prints the token)."""
    from medsettle.ledger import ecert as certificates

    try:
        if key_file:
            key = certificates.parse_key(Path(key_file).read_text("ascii"))
        else:
            key = certificates.key_from_env(os.environ)
        if key is None:
            raise click.ClickException(f"no signing key: give --key-file or set {certificates.KEY_ENV}")
        click.echo(certificates.issue(key, psn_no, parse_clock(clock).now(), ttl_s))
    except certificates.EcertError as error:
        raise click.ClickException(str(error)) from None


def _parse_day(text: str) -> dt.date:
    """A YYYY-MM-DD day; Python also reads 20261015 as an ISO date, but days are stored as YYYY-MM-DD."""
    try:
        day = dt.date.fromisoformat(text)
        if len(text) != 10:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"must be YYYY-MM-DD, got {text!r}", param_hint="--date") from None
    return day


def _day(text: str | None, clock: str) -> dt.date:
    now = parse_clock(clock).now().astimezone(CHINA_TZ)
    if not text:
        return now.date() - dt.timedelta(days=1)
    day = _parse_day(text)
    if day >= now.date():
        raise click.ClickException(f"{day} is not over yet (China time): export it from {day + dt.timedelta(days=1)} 00:00")
    return day


@click.command("export-daily")
@click.option("--date", "date_text", default=None, help="The China-time day to export (YYYY-MM-DD); default: yesterday.")
@click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help="The ledger (read only): a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--out", "out_dir", default="var/supervision", show_default=True, help="Directory; the files go to OUT/DATE/.")
@click.option("--clock", default="", help="Treat this ISO time as now (demo/tests).")
def export_daily(date_text: str | None, db: str, out_dir: str, clock: str) -> None:
    """Write a closed day's settlement details and audit flags for the supervision platform."""
    from medsettle.ledger.supervision.export import export_day
    from medsettle.progress import progress_hooks

    day = _day(date_text, clock)
    with progress_hooks(f"exporting {day.isoformat()}", "records") as hooks:
        result = export_day(db, day, out_dir, hooks)
    click.echo(f"{result.directory}: {result.settlements} settlement record(s), {result.flags} flag(s); "
               f"manifest sha256 {result.manifest_sha256}")
    now = parse_clock(clock).now().astimezone(CHINA_TZ)
    for deadline in result.deadlines:
        if deadline.late_at(now):
            click.echo(f"LATE: region {deadline.admdvs}'s export of {day} was due by {deadline.due:%Y-%m-%d %H:%M} "
                       f"China time; exported {now:%Y-%m-%d %H:%M}")


@click.command("audit-flags")
@click.option("--date", "date_text", required=True, help="The China-time day (YYYY-MM-DD).")
@click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help="The ledger (read only): a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--code", "fixmedins_code", default="", help="Only this institution's flags.")
def audit_flags(date_text: str, db: str, fixmedins_code: str) -> None:
    """List the fund-supervision flags raised on a day, as JSON Lines."""
    from medsettle.ledger.storage.backends import connect_read_only
    from medsettle.ledger.supervision.export import flags_of_day

    _parse_day(date_text)
    conn = connect_read_only(db)
    try:
        for flag in flags_of_day(conn, date_text, fixmedins_code):
            sys.stdout.write(json.dumps(flag, ensure_ascii=False, sort_keys=True) + "\n")
    finally:
        conn.close()


@click.command("quotas")
@click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help="The ledger (read only): a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--year", type=int, default=None, help="Only this year's quotas.")
def quotas(db: str, year: int | None) -> None:
    """Each host hospital's budget quota, what its fund payments used, whether it is reached (JSON Lines)."""
    from medsettle.ledger.reference.loader import parse_document
    from medsettle.ledger.storage.internet_state import InternetStateStore
    from medsettle.ledger.storage.backends import connect_read_only, shown

    conn = connect_read_only(db)
    try:
        row = conn.execute("SELECT body FROM reference_documents ORDER BY doc_no DESC LIMIT 1").fetchone()
        if row is None:
            raise click.ClickException(f"{shown(db)} has no reference data yet")
        reference = parse_document(json.loads(row[0]))[0]
        used = InternetStateStore(conn).quota_uses()
    finally:
        conn.close()
    for (host, quota_year), quota in sorted(reference.internet.quotas.items()):
        if year is not None and quota_year != year:
            continue
        used_fen = used.get((host, quota_year), 0)
        sys.stdout.write(json.dumps({
            "host_code": host, "year": quota_year, "quota_fen": quota.quota_fen, "used_fen": used_fen,
            "remaining_fen": quota.quota_fen - used_fen, "on_reach": quota.on_reach.value,
            "reached": used_fen >= quota.quota_fen,
        }, sort_keys=True) + "\n")

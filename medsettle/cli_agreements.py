"""`medsettle agreements list|add|suspend|resume`: the internet hospitals'
supplementary agreements with the agency. The reference document's are the
starting point; what an operator adds or changes here is stored in the
ledger and replaces the document's agreement of the same agreement_no. A
running server sees a change from its next batch."""

from __future__ import annotations

import json
import sys

import click

from medsettle.ledger.reference.internet import Agreement, AgreementStatus, ReferenceSectionError

DB_HELP = "The ledger (a SQLite file or a postgresql:// URL) [env MEDSETTLE_DB]."


def _open(db: str):  # type: ignore[no-untyped-def]
    """(store, reference data in force)."""
    from medsettle.ledger.reference.loader import parse_document
    from medsettle.ledger.storage.backends import open_ledger, shown

    store = open_ledger(db)
    body = store.reference_body()
    if body is None:
        store.close()
        raise click.ClickException(f"{shown(db)} has no reference data yet")
    return store, parse_document(json.loads(body))[0]


def _current(store, reference) -> list[Agreement]:  # type: ignore[no-untyped-def]
    from medsettle.ledger.settlement.agreements import merged

    return merged(reference.internet.agreements, store.internet_state().agreements_of([]))


def _save(store, agreement: Agreement) -> None:  # type: ignore[no-untyped-def]
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.storage.rows import to_us

    store.begin()
    try:
        store.internet_state().save_agreement(agreement, to_us(SystemClock().now()))
    except BaseException:
        store.rollback()
        raise
    store.commit()


def _record(agreement: Agreement) -> str:
    return json.dumps({
        "agreement_no": agreement.agreement_no, "internet_code": agreement.internet_code,
        "host_code": agreement.host_code, "visit_types": sorted(agreement.visit_types),
        "item_kinds": sorted(agreement.item_kinds), "valid_from": agreement.valid_from,
        "valid_to": agreement.valid_to, "status": agreement.status.value, "payee": agreement.payee.value,
        "payee_code": agreement.payee_code(),
    }, sort_keys=True)


@click.group()
def agreements() -> None:
    """Internet hospitals' agreements with the agency (scope, dates, status, payee)."""


@agreements.command("list")
@click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help=DB_HELP)
@click.option("--code", "internet_code", default="", help="Only this internet hospital's.")
def list_agreements(db: str, internet_code: str) -> None:
    """Every agreement in force of record, as JSON Lines."""
    store, reference = _open(db)
    try:
        for agreement in _current(store, reference):
            if not internet_code or agreement.internet_code == internet_code:
                sys.stdout.write(_record(agreement) + "\n")
    finally:
        store.close()


@agreements.command("add")
@click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help=DB_HELP)
@click.option("--agreement-no", required=True, help="The agreement's number (1-40 letters, digits, '.', '-', '_').")
@click.option("--internet-code", required=True, help="The internet hospital (its host is the reference data's).")
@click.option("--valid-from", required=True, help="First day in force (YYYY-MM-DD, China time).")
@click.option("--valid-to", required=True, help="Last day in force (YYYY-MM-DD).")
@click.option("--visit-type", "visit_types", multiple=True, default=("internet_followup",), show_default=True,
              help="A visit kind it covers; repeat for more.")
@click.option("--item-kind", "item_kinds", multiple=True, help="A catalogue item kind it covers; repeat; none: any.")
@click.option("--payee", type=click.Choice(["internet_hospital", "host"]), default="host", show_default=True,
              help="Who the fund part is paid to.")
def add(db: str, agreement_no: str, internet_code: str, valid_from: str, valid_to: str,
        visit_types: tuple[str, ...], item_kinds: tuple[str, ...], payee: str) -> None:
    """Add an agreement (active), or replace the one of the same number."""
    from medsettle.ledger.reference.internet import parse_agreement
    from medsettle.ledger.reference.models import InstitutionKind

    store, reference = _open(db)
    try:
        hosts = {code: i.host_code for code, i in reference.institutions.items()
                 if i.kind == InstitutionKind.INTERNET_HOSPITAL}
        try:
            agreement = parse_agreement({
                "agreement_no": agreement_no, "internet_code": internet_code, "visit_types": list(visit_types),
                "item_kinds": list(item_kinds), "valid_from": valid_from, "valid_to": valid_to, "payee": payee,
            }, "agreement", hosts)
        except ReferenceSectionError as error:
            raise click.BadParameter(str(error).removeprefix("agreement."))
        _save(store, agreement)
        sys.stdout.write(_record(agreement) + "\n")
    finally:
        store.close()


def _set_status(db: str, agreement_no: str, status: AgreementStatus) -> None:
    from dataclasses import replace

    store, reference = _open(db)
    try:
        found = next((a for a in _current(store, reference) if a.agreement_no == agreement_no), None)
        if found is None:
            raise click.BadParameter(f"no agreement {agreement_no!r}", param_hint="--agreement-no")
        changed = replace(found, status=status)
        _save(store, changed)
        sys.stdout.write(_record(changed) + "\n")
    finally:
        store.close()


def _status_command(name: str, status: AgreementStatus, summary: str) -> None:
    @agreements.command(name, help=summary)
    @click.option("--db", envvar="MEDSETTLE_DB", default="var/medsettle.db", show_default=True, help=DB_HELP)
    @click.option("--agreement-no", required=True, help="The agreement.")
    def command(db: str, agreement_no: str) -> None:
        _set_status(db, agreement_no, status)


_status_command("suspend", AgreementStatus.SUSPENDED,
                "Suspend an agreement: its internet hospital's settlements are refused until it is resumed.")
_status_command("resume", AgreementStatus.ACTIVE, "Make a suspended agreement active again.")

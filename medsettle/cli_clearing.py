"""`medsettle clear` and `medsettle prepay`: the provincial handling agency's
monthly clearing run and the prepaid funds it draws on. Composition only:
the run is ledger/clearing/run.py."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import click
from rich.console import Console
from rich.table import Table

from medsettle.progress import progress_hooks

EXIT_BREAKS = 3  # 1: refused (bad option, period not ended); 2: usage error
DEFAULT_STATEMENT_ROOT = Path("var/statements")
STATEMENT_FILES = ("statement.json", "statement.csv", "payment_instructions.csv", "statement.html")
BREAKS_FILE = "breaks.json"
MAX_TABLE_ROWS = 40  # the terminal shows this many rows per table; the files hold all


def _check_db(db: str) -> None:
    """A SQLite ledger must exist (clearing never creates one); a URL is checked when opened."""
    from medsettle.ledger.storage.backends import is_postgres

    if not is_postgres(db) and not Path(db).is_file():
        raise click.ClickException(f"--db: no database at {db}")


@click.command()
@click.option("--province", required=True, help="2-digit province code whose agencies are cleared (e.g. 44).")
@click.option("--period", required=True, help="The month to clear, YYYY-MM (China time); it must have ended.")
@click.option("--db", envvar="MEDSETTLE_DB", required=True, help="The ledger: a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--dry-run", is_flag=True,
              help="Reconcile and show what would be posted; opens the ledger read only, writes no file.")
@click.option("--statement-dir", type=click.Path(file_okay=False),
              help="Where the statement, payment instructions or breaks report go [default: var/statements/PP-YYYY-MM].")
@click.option("--declared", type=click.Path(exists=True, dir_okay=False),
              help="Institution-declared totals, CSV: fixmedins_code,clr_type,setl_cnt,medfee_sumamt_fen,"
                   "fund_pay_sumamt_fen,acct_pay_fen,psn_cash_pay_fen (3201/3203).")
@click.option("--clock", default="", help="Fix the clock at an ISO time (China time if no offset); default: system clock.")
@click.option("--json", "as_json", is_flag=True, help="Print the statement as JSON (the stored bytes) instead of tables.")
def clear(province: str, period: str, db: str, dry_run: bool, statement_dir: str | None, declared: str | None,
          clock: str, as_json: bool) -> None:
    """Reconcile and clear one month of a province (DESIGN.md "Provincial clearing").

    Reconciles first: the journal entries added since the last verified
    checkpoint one by one (hash chain, each settlement's postings), then the
    month in sums computed by the database (its settlements' postings, trial
    balances, reciprocal pairs, institution payables, optionally declared
    totals); see docs/clearing.md. Any
    break: writes breaks.json, posts nothing, exits 3. Otherwise nets every
    agency's position through the provincial clearing book, draws prepaid
    funds, posts one clearing entry and writes statement.json, statement.csv,
    payment_instructions.csv and statement.html (the same numbers, for
    people: a chart, the prepaid funds, the reconciliation). A period is cleared once: a re-run prints
    and writes the same statement and posts nothing.
    """
    from medsettle.ledger.clearing.run import Outcome, run_clearing
    from medsettle.ledger.clearing.statement import render_instructions_csv, render_statement_csv
    from medsettle.ledger.clearing.statement_html import render_statement_html
    from medsettle.ledger.clock import parse_clock

    _check_db(db)
    out_dir = Path(statement_dir) if statement_dir else DEFAULT_STATEMENT_ROOT / f"{province}-{period}"
    status = Console(stderr=True, highlight=False)
    with _clearing_store(db, read_only=dry_run) as store, \
            progress_hooks("verifying new entries", "entries", quiet=as_json) as hooks:
        result = run_clearing(store, province, period, parse_clock(clock), dry_run=dry_run,
                              declared_csv=declared, hooks=hooks)

    # A dry run writes no file either: it shows on the terminal what a real run would write.
    if result.outcome is Outcome.BREAKS:
        report_path = None if dry_run else out_dir / BREAKS_FILE
        if report_path is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(result.breaks, ensure_ascii=False, indent=2) + "\n", "utf-8")
        _print_breaks(result.breaks, Console(highlight=False), report_path)
        sys.exit(EXIT_BREAKS)

    data = json.loads(result.statement_json)
    if result.outcome is Outcome.DRY_RUN:
        status.print(f"[yellow]Dry run[/]: province {province} period {period} reconciles; nothing was posted or written.")
    elif dry_run:  # already cleared
        status.print(f"[yellow]Dry run[/]: province {province} period {period} was already cleared at "
                     f"{data['cleared_at']}; its statement follows; nothing was posted or written.")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        texts = (result.statement_json, render_statement_csv(data), render_instructions_csv(data),
                 render_statement_html(data))
        for name, text in zip(STATEMENT_FILES, texts):
            (out_dir / name).write_text(text, "utf-8")
        if result.outcome is Outcome.ALREADY_CLEARED:
            status.print(f"Province {province} period {period} was already cleared at {data['cleared_at']}; "
                         f"nothing posted. Statement in {out_dir}.")
        else:
            status.print(f"[green]Cleared[/] province {province} period {period}: reconciled ({result.entries_verified} "
                         f"journal entries checked one by one since the last checkpoint), clearing entry "
                         f"{data['clearing_entry']['entry_no']}. Statement in {out_dir}.")
    if as_json:
        click.echo(result.statement_json, nl=False)
    else:
        _print_statement(data, Console(highlight=False), show_postings=result.outcome is Outcome.DRY_RUN)


@click.command()
@click.option("--province", required=True, help="2-digit province code of the provincial clearing book.")
@click.option("--agency", required=True, help="The insurance-place agency (6-digit region code) paying in.")
@click.option("--amount-fen", required=True, type=int, help="Amount paid into the prepaid fund, in fen (> 0).")
@click.option("--db", envvar="MEDSETTLE_DB", required=True,
              help="The ledger: a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--clock", default="", help="Fix the clock at an ISO time (China time if no offset); default: system clock.")
def prepay(province: str, agency: str, amount_fen: int, db: str, clock: str) -> None:
    """Record an agency's payment into its prepaid clearing fund (先预付后清算).

    Posts one journal entry in the current period: in the agency's book
    Dr prepaid:province:PP / Cr fund:pool; in the provincial book
    Dr fund:clearing_bank / Cr prepaid:agency:A. Clearing draws on the fund
    when the agency owes; what it does not cover is reported as a shortfall.
    """
    from medsettle.ledger.clearing.run import prepay as post_prepayment
    from medsettle.ledger.clock import parse_clock
    from medsettle.ledger.money import yuan

    _check_db(db)
    with _clearing_store(db) as store:
        entry_no, _ = post_prepayment(store, province, agency, amount_fen, parse_clock(clock))
        fund_fen = store.prepaid_balances(province).get(agency, 0)
    click.echo(f"entry {entry_no}: {agency} prepaid {yuan(amount_fen)} yuan; its fund at province {province} "
               f"is {fund_fen} fen ({yuan(fund_fen)} yuan)")


@contextlib.contextmanager
def _clearing_store(db: str, read_only: bool = False) -> Iterator[Any]:
    """The ledger for a clearing command; a refusal becomes exit 1 with its
    message (a database that cannot be reached or holds no ledger is refused
    by the command group, naming a URL without its password). read_only (a
    dry run): opened as `verify` opens it, so not even the schema of an
    older version's ledger is brought up to date."""
    from medsettle.ledger.clearing.period import ClearingRefused
    from medsettle.ledger.storage.backends import is_postgres

    store = _open_clearing_store(db, read_only, is_postgres(db))
    try:
        yield store
    except ClearingRefused as refusal:
        raise click.ClickException(str(refusal)) from None
    finally:
        store.close()


def _open_clearing_store(db: str, read_only: bool, postgres: bool) -> Any:
    # a database without a ledger is refused before anything is written into it
    if postgres:
        from medsettle.ledger.clearing.postgres_store import PostgresClearingStore
        from medsettle.ledger.storage.postgres import connect_qmark

        connect_qmark(db, read_only=True).close()
        return PostgresClearingStore(db, read_only=read_only)
    from medsettle.ledger.clearing.store import ClearingStore
    from medsettle.ledger.storage.sqlite import connect_read_only

    connect_read_only(db).close()
    return ClearingStore(db, read_only=read_only)


def _print_statement(data: dict[str, Any], console: Console, show_postings: bool) -> None:
    from medsettle.ledger.money import yuan

    totals = data["totals"]
    console.print(f"[bold]Clearing statement[/] province {data['province']} period {data['period']} "
                  f"(cleared at {data['cleared_at']})")
    console.print(f"{totals['setl_cnt']} settlement records at {len(data['institutions'])} institutions; "
                  f"medical fees {yuan(totals['medfee_sumamt_fen'])}, fund {yuan(totals['fund_pay_sumamt_fen'])}, "
                  f"personal accounts {yuan(totals['acct_pay_fen'])}, payable to institutions "
                  f"{yuan(totals['payable_fen'])} yuan")
    positions = Table(title="Net positions through the provincial clearing book (yuan; + the province pays)")
    for column in ("party", "net", "prepaid fund", "drawn", "shortfall", "to settle"):
        positions.add_column(column, justify="left" if column == "party" else "right")
    for p in data["positions"][:MAX_TABLE_ROWS]:
        positions.add_row(p["party"], yuan(p["net_fen"]), yuan(p["prepaid_available_fen"]), yuan(p["prepaid_drawn_fen"]),
                          f"[red]{yuan(p['shortfall_fen'])}[/]" if p["shortfall_fen"] else "0.00", yuan(p["to_settle_fen"]))
    console.print(positions)
    between = Table(title="Payment instructions, agency <-> province (yuan; after prepaid draws)")
    for column in ("payer", "payee", "amount"):
        between.add_column(column, justify="right" if column == "amount" else "left")
    for i in data["payment_instructions"]:
        if i["purpose"] == "net position":
            between.add_row(i["payer"], i["payee"], yuan(i["amount_fen"]))
    console.print(between)
    by_agency: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # summed here; one line per institution in the CSV
    for institution in data["institutions"]:
        by_agency[institution["agency"]][0] += 1
        by_agency[institution["agency"]][1] += institution["payable_fen"]
    to_institutions = Table(title="Agency -> institutions (yuan; each one in payment_instructions.csv)")
    for column in ("agency", "institutions", "total"):
        to_institutions.add_column(column, justify="left" if column == "agency" else "right")
    for agency, (count, total_fen) in sorted(by_agency.items()):
        to_institutions.add_row(agency, str(count), yuan(total_fen))
    console.print(to_institutions)
    for p in data["positions"]:
        if p["shortfall_fen"]:
            console.print(f"[red]SHORTFALL[/] {p['party']}'s prepaid fund covers {yuan(p['prepaid_drawn_fen'])} of "
                          f"{yuan(-p['net_fen'])} yuan; it must pay {yuan(p['shortfall_fen'])} yuan to the province")
    if show_postings:
        postings = Table(title="The clearing entry that would be posted, per account (yuan; debit +, credit -)")
        for column in ("book", "account", "amount"):
            postings.add_column(column, justify="right" if column == "amount" else "left")
        per_account: dict[tuple[str, str], int] = defaultdict(int)
        for p in data["clearing_postings"]:
            per_account[(p["book"], p["account"])] += p["amount_fen"]
        for (book, account), amount_fen in sorted(per_account.items()):
            postings.add_row(book, account, yuan(amount_fen))
        console.print(postings)
        console.print(f"{len(data['clearing_postings'])} postings in one journal entry (all in --json).")


def _print_breaks(report: dict[str, Any], console: Console, path: Path | None) -> None:
    from medsettle.ledger.money import yuan

    table = Table(title=f"Reconciliation breaks, province {report['province']} period {report['period']}")
    for column in ("kind", "where", "amount", "what"):
        table.add_column(column, justify="right" if column == "amount" else "left", overflow="fold")
    for b in report["breaks"][:MAX_TABLE_ROWS]:
        table.add_row(b["kind"], b["where"], yuan(b["amount_fen"]), b["detail"])
    console.print(table)
    counts = ", ".join(f"{kind} {count}" for kind, count in report["counts"].items())
    where = f"Report: {path}" if path is not None else f"Dry run: no report written (at most {MAX_TABLE_ROWS} shown)"
    console.print(f"[red]{report['breaks_total']} break(s)[/] ({counts}); nothing was posted. {where}", soft_wrap=True)

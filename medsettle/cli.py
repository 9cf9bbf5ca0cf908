"""The `medsettle` command: run the service, settle from the hospital side,
and (for agency operators) inspect the ledger. Every command has --help."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path

import click
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from medsettle.ledger.storage.writer import OVERLAP_MIN

DEFAULT_DB = "var/medsettle.db"
DEFAULT_LISTEN = "127.0.0.1:50051"


class _Commands(click.Group):
    """A database that is no SQLite ledger (a wrong --db, a locked or damaged
    file) is a one-line refusal (exit 1), not a traceback; so is a --db that
    a read-only command finds missing or without a ledger in it."""

    def invoke(self, ctx: click.Context) -> object:
        import psycopg

        from medsettle.ledger.storage.backends import BackendUnavailable
        from medsettle.ledger.storage.migrations import SchemaVersionError
        from medsettle.ledger.storage.migrations.on_postgres import EmptyDatabase
        from medsettle.ledger.storage.pg_connect import DatabaseConnectError
        from medsettle.ledger.storage.port import NotALedgerError, StorageError

        try:
            return super().invoke(ctx)
        except (NotALedgerError, BackendUnavailable, StorageError, SchemaVersionError, EmptyDatabase) as error:
            raise click.ClickException(f"--db: {error}") from None
        except DatabaseConnectError as error:
            raise click.ClickException(str(error)) from None
        except sqlite3.DatabaseError as error:
            raise click.ClickException(f"--db: SQLite: {error}") from None
        except psycopg.Error as error:  # e.g. a schema step PostgreSQL refused (rolled back whole)
            message = " ".join(str(error).split())  # PostgreSQL's text spans lines
            raise click.ClickException(f"--db: PostgreSQL: {type(error).__name__}: {message}") from None


@click.group(cls=_Commands)
@click.version_option(package_name="medsettle")
def main() -> None:
    """medsettle: real-time medical-insurance settlement and provincial clearing."""


# ---- service -------------------------------------------------------------
@main.command()
@click.option("--db", envvar="MEDSETTLE_DB", default=DEFAULT_DB, show_default=True,
              help="The ledger: a SQLite file (created if missing) or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="HOST:PORT to listen on (port 0: any free port).")
@click.option("--clock", default="", help="Fix the clock at an ISO time (China time if no offset); default: system clock.")
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]),
              help="Default: info (warning with --demo, to keep the demo readable).")
@click.option("--log-format", default="auto", show_default=True, type=click.Choice(["auto", "json", "console"]))
@click.option("--port-file", type=click.Path(dir_okay=False), help="Write the bound port to this file once serving.")
@click.option("--with-echo", is_flag=True, help="Also serve the no-op EchoService (benchmark baseline).")
@click.option("--demo", is_flag=True, help="Once serving, run the demo bills against this server and print them.")
@click.option("--exit-after-demo", is_flag=True, help="With --demo: stop after the demo instead of serving on.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Mutual TLS: the server certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Mutual TLS: its private key (PEM).")
@click.option("--tls-client-ca", type=click.Path(exists=True, dir_okay=False),
              help="Mutual TLS: the CA that signs client certificates (CN = institution code or operator:NAME).")
@click.option("--max-concurrent-rpcs", type=click.IntRange(1, 100_000), default=2_048, show_default=True,
              help="Calls served at once; beyond it gRPC answers RESOURCE_EXHAUSTED.")
@click.option("--max-message-bytes", type=click.IntRange(4_096, 64 << 20), default=1 << 20, show_default=True,
              help="Largest request or response.")
@click.option("--writer-queue", type=click.IntRange(1, 1_000_000), default=8_192, show_default=True,
              help="Writes waiting for the writer; beyond it callers get RESOURCE_EXHAUSTED (OVERLOADED).")
@click.option("--writer-batch", type=click.IntRange(1, 10_000), default=512, show_default=True,
              help="Writes per group commit (at most --writer-queue).")
@click.option("--writer-overlap-min", type=click.IntRange(1, 10_000), default=OVERLAP_MIN, show_default=True,
              help="While a batch is in the writer process, send the next one only once this many writes wait "
                   "(1: at once; at least --writer-batch: only full batches overlap); else they join the "
                   "batch sent when its answers come.")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT", callback=lambda ctx, param, value: _host_port(value),
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free port, logged); default: off.")
@click.option("--http-listen", default=None, metavar="HOST:PORT", callback=lambda ctx, param, value: _host_port(value),
              help="Also serve the national-interface JSON gateway (POST /fsi/api/rsfComIfsService/callService, "
                   "docs/gateway.md) at HOST:PORT, same credentials, TLS files and bounds; default: off.")
@click.option("--writer-process/--writer-thread", default=True, show_default=True,
              help="Run the writer's work (split, rules, postings, SQLite writes) in a child process of its own, "
                   "off the gRPC process's GIL (measured ~20 % more unary settlements/s), or on a thread of the "
                   "server process (one process, ~45 MiB less memory).")
def serve(db: str, listen: str, clock: str, log_level: str | None, log_format: str, port_file: str | None,
          with_echo: bool, demo: bool, exit_after_demo: bool, tls_cert: str | None, tls_key: str | None,
          tls_client_ca: str | None, max_concurrent_rpcs: int, max_message_bytes: int, writer_queue: int,
          writer_batch: int, writer_overlap_min: int, writer_process: bool, metrics_listen: str | None,
          http_listen: str | None) -> None:
    """Run the gRPC settlement server until SIGTERM/SIGINT (drains in-flight calls).

    Every SettlementService call must carry a credential (see `medsettle credentials`):
    a bearer token, or with --tls-* a client certificate."""
    from medsettle.ledger.clock import parse_clock
    from medsettle.ledger.service import SettlementService
    from medsettle.ledger.storage.backends import make_room_for
    from medsettle.ledger.storage.writer import WriterLimits
    from medsettle.server.app import ListenError, RunningServer, ServerLimits, serve as run_server
    from medsettle.server.auth import CredentialCache
    from medsettle.server.logs import configure_logging
    from medsettle.server.tls import TlsFiles

    tls_options = (tls_cert, tls_key, tls_client_ca)
    if any(tls_options) and not all(tls_options):
        raise click.UsageError("--tls-cert, --tls-key and --tls-client-ca go together")
    if writer_batch > writer_queue:
        raise click.UsageError("--writer-batch must be at most --writer-queue")
    tls = TlsFiles.read(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key and tls_client_ca else None
    configure_logging(log_level or ("warning" if demo else "info"), log_format)
    make_room_for(db)
    service = SettlementService(db, parse_clock(clock), WriterLimits(max_batch=writer_batch, max_queue=writer_queue,
                                                                  overlap_min=writer_overlap_min),
                                writer_process=writer_process)
    limits = ServerLimits(max_message_bytes=max_message_bytes, max_concurrent_rpcs=max_concurrent_rpcs)

    async def on_ready(running: RunningServer) -> bool:
        if port_file:
            Path(port_file).write_text(f"{running.port}\n")
        if not demo:
            return True
        console = Console(width=max(Console().width, 100))
        demo_credentials = _provision_demo(db)
        await credentials.reload()  # the demo's tokens work at once
        try:
            http_port = running.gateway.port if running.gateway is not None else None
            await asyncio.get_running_loop().run_in_executor(None, _run_demo, running.port, db, console, demo_credentials,
                                                             http_port)
        finally:
            _revoke(db, demo_credentials.cred_ids)
        if running.metrics is not None:
            await asyncio.get_running_loop().run_in_executor(None, _print_metrics, running.metrics.url, console)
        if not exit_after_demo:
            import shlex

            from medsettle.invocation import this_command
            from medsettle.ledger.storage.backends import shown

            # soft_wrap: the command stays one line, to be copied whole (no line break inserted)
            console.print(f"Serving on port {running.port}; Ctrl-C to stop. Calls need a credential: "
                          f"{this_command()} credentials issue --db {shlex.quote(shown(db))} --code H44010100001 "
                          "--label me", soft_wrap=True)
        return not exit_after_demo

    credentials = CredentialCache(db)
    try:
        asyncio.run(run_server(listen, service, limits, on_ready=on_ready, with_echo=with_echo,
                               credentials=credentials, tls=tls, metrics_address=metrics_listen,
                               http_address=http_listen))
    except ListenError as error:
        service.close()
        raise click.ClickException(str(error)) from None


def _host_port(value: str | None) -> str | None:
    """The address as given, once server.metrics.split_host_port accepts it."""
    from medsettle.server.metrics import split_host_port

    if value is not None:
        try:
            split_host_port(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value


def _print_metrics(url: str, console: Console) -> None:
    """What the server's /metrics says of the demo's calls, scraped as Prometheus would."""
    from collections import Counter

    from medsettle.client.metrics_scrape import scrape, value

    samples = scrape(url)
    codes: Counter[str] = Counter()
    for (name, labels), count in samples.items():
        if name == "medsettle_calls_total":
            codes[dict(labels)["code"]] += int(count)
    console.print(f"Metrics at {url}: calls by status " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
                  + f"; the writer committed {value(samples, 'medsettle_writer_commands_total'):.0f} writes "
                  f"in {value(samples, 'medsettle_writer_batches_total'):.0f} batches.")


def _provision_demo(db: str):  # type: ignore[no-untyped-def]
    """The demo acts as each of its institutions with credentials of its own,
    revoked when it is done."""
    from medsettle.client.demo import demo_institutions
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.storage.credentials import CredentialStore

    with CredentialStore(db) as store:
        return store.provision(demo_institutions(), "demo", SystemClock().now())


def _revoke(db: str, cred_ids: list[int]) -> None:
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.storage.credentials import CredentialStore

    with CredentialStore(db) as store:
        for cred_id in cred_ids:
            store.revoke(cred_id, SystemClock().now())


def _run_demo(port: int, db: str, console: Console, demo, http_port: int | None = None) -> None:  # type: ignore[no-untyped-def]
    from medsettle.client.demo import run_demo
    from medsettle.client.demo_gateway import GATEWAY_BILL, run_gateway_demo
    from medsettle.client.settlement_client import SettlementClient

    from medsettle.ledger.storage.backends import shown

    console.print(f"[bold]medsettle demo[/]: server on 127.0.0.1:{port}, database {shown(db)}")
    with SettlementClient(f"127.0.0.1:{port}", token=demo.operator_token, tokens=demo.tokens) as client:
        run_demo(client, console)
        if http_port is not None:
            run_gateway_demo(http_port, demo.tokens[GATEWAY_BILL.fixmedins_code], client, console)
    _print_balances(db, None, console)


@main.command("load-reference")
@click.option("--db", envvar="MEDSETTLE_DB", default=DEFAULT_DB, show_default=True,
              help="The ledger: a SQLite file (created if missing) or a postgresql:// URL [env MEDSETTLE_DB].")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def load_reference(db: str, file: str) -> None:
    """Load your own reference data (format medsettle-reference/1, JSON; see docs/operations.md)."""
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.reference.loader import ReferenceDataError
    from medsettle.ledger.service import load_reference_file
    from medsettle.ledger.storage.backends import make_room_for, open_ledger

    from medsettle.progress import progress_hooks

    make_room_for(db)
    store = open_ledger(db)
    try:
        with progress_hooks("checking reference records", "records") as hooks:
            data = load_reference_file(store, file, SystemClock(), hooks)
    except ReferenceDataError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    click.echo(f"loaded {len(data.regions)} regions, {len(data.institutions)} institutions, "
               f"{len(data.catalogue)} catalogue items, {len(data.policies)} policies")


@main.command()
@click.option("--db", envvar="MEDSETTLE_DB", default=DEFAULT_DB, show_default=True, help="The ledger (read only): a SQLite file or a postgresql:// URL [env MEDSETTLE_DB].")
@click.option("--period", default=None, help="Only postings of this period (YYYY-MM).")
def balances(db: str, period: str | None) -> None:
    """Show every book's balances and check the trial balance and reciprocal accounts."""
    from medsettle.ledger.clock import parse_period

    if period is not None:
        try:
            parse_period(period)
        except ValueError:
            raise click.BadParameter(f"must be YYYY-MM, got {period!r}", param_hint="--period") from None
    if not _print_balances(db, period, Console()):
        sys.exit(1)


def _print_balances(db: str, period: str | None, console: Console) -> bool:
    from medsettle.ledger.money import yuan
    from medsettle.ledger.clearing.store import ClearingStore
    from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks

    from medsettle.ledger.storage.backends import is_postgres

    if is_postgres(db):  # the clearing reads balances needs, on the PostgreSQL store (the same SQL)
        from medsettle.ledger.storage.postgres import PostgresClearingReads as ClearingStore  # noqa: N814
    store = ClearingStore(db, read_only=True)
    try:
        balances_fen = store.book_balances(period)
        # Pairs are compared on settlement postings: one province's clearing
        # zeroes its side of a cross-province pair before the other's does.
        settled_pairs_fen = store.settlement_agency_balances(period)
    finally:
        store.close()
    table = Table(title=f"Ledger balances{' ' + period if period else ''} (yuan; debit +, credit -)")
    table.add_column("book")
    table.add_column("account")
    table.add_column("balance", justify="right")
    for (book, account), amount in sorted(balances_fen.items()):
        if amount:
            table.add_row(book, account, yuan(amount))
    console.print(table)
    breaks = trial_balance_breaks(balances_fen) + reciprocity_breaks(settled_pairs_fen)
    books = {book for book, _ in balances_fen}
    if breaks:
        for item in breaks:
            console.print(f"[red]BREAK[/] {item.detail}")
        return False
    at_zero = sum(1 for amount in balances_fen.values() if not amount)
    # A book whose accounts are all at zero (a settlement and its reversal) has no row above.
    hidden = f" {at_zero} account(s) at zero are not listed." if at_zero else ""
    console.print(f"All {len(books)} books balance to zero; reciprocal agency accounts match.{hidden}")
    return True


# ---- hospital side ---------------------------------------------------------
def _client(target: str, token: str | None):  # type: ignore[no-untyped-def]
    from medsettle.client.settlement_client import SettlementClient

    return SettlementClient(target, token=token)


def _print_message(message: object) -> None:
    click.echo(json.dumps(
        json_format.MessageToDict(message, preserving_proto_field_name=True),  # type: ignore[arg-type]
        ensure_ascii=False, indent=2,
    ))


target_option = click.option("--target", default=DEFAULT_LISTEN, show_default=True, envvar="MEDSETTLE_TARGET", help="Server HOST:PORT.")
token_option = click.option("--token", default=None, envvar="MEDSETTLE_TOKEN", help="Institution or operator credential.")


def _refused(error: Exception) -> click.ClickException:
    from medsettle.client.settlement_client import CallRefused

    assert isinstance(error, CallRefused)
    lines = [str(error)] + [f"  {f}: {d}" for f, d in error.field_violations]
    return click.ClickException("\n".join(lines))


@main.command()
@target_option
@token_option
@click.option("--pre", is_flag=True, help="Pre-settle only (2206): show the split, store nothing.")
@click.argument("bill_file", type=click.File("r"))
def settle(target: str, token: str | None, pre: bool, bill_file) -> None:  # type: ignore[no-untyped-def]
    """Settle a bill from a JSON file (SettleRequest field names; '-' for stdin)."""
    from medsettle.client.settlement_client import CallRefused
    from medsettle.v1 import settlement_pb2 as pb

    try:
        request = json_format.Parse(bill_file.read(), pb.SettleRequest())
    except json_format.ParseError as error:
        raise click.ClickException(f"bill file: {error}") from None
    with _client(target, token) as client:
        try:
            result = client.pre_settle(request) if pre else client.settle(request)
        except CallRefused as error:
            raise _refused(error) from None
    _print_message(result)


@main.command()
@target_option
@token_option
@click.option("--code", "fixmedins_code", required=True, help="Your institution code.")
@click.option("--setl-id", required=True, help="The settlement to reverse.")
@click.option("--msgid", default=None, help="msgid of the reversal (default: a new one). Reuse it to retry safely.")
def reverse(target: str, token: str | None, fixmedins_code: str, setl_id: str, msgid: str | None) -> None:
    """Reverse a settlement (2208): exact contra-entries, the original stays."""
    from medsettle.client.settlement_client import CallRefused, make_msgid

    with _client(target, token) as client:
        try:
            result = client.reverse(msgid or make_msgid(fixmedins_code), fixmedins_code, setl_id)
        except CallRefused as error:
            raise _refused(error) from None
    _print_message(result)


@main.command()
@target_option
@token_option
@click.option("--code", "fixmedins_code", required=True, help="Your institution code.")
@click.option("--setl-id", default="", help="Settlement id (or --msgid, not both).")
@click.option("--msgid", default="", help="Or the msgid that created it.")
def get(target: str, token: str | None, fixmedins_code: str, setl_id: str, msgid: str) -> None:
    """Show one settlement or reversal, by --setl-id or by --msgid."""
    from medsettle.client.settlement_client import CallRefused

    if bool(setl_id) == bool(msgid):
        raise click.UsageError("give exactly one of --setl-id and --msgid")
    with _client(target, token) as client:
        try:
            result = client.get(fixmedins_code, setl_id=setl_id, msgid=msgid)
        except CallRefused as error:
            raise _refused(error) from None
    _print_message(result)


from medsettle.cli_clearing import clear, prepay  # noqa: E402  (provincial clearing, issue #4)

main.add_command(clear)
main.add_command(prepay)

from medsettle.cli_credentials import credentials  # noqa: E402  (authentication, issue #6)

main.add_command(credentials)

from medsettle.cli_verify import verify  # noqa: E402  (tamper evidence, issue #6)

main.add_command(verify)

from medsettle.cli_load import load  # noqa: E402  (load generator, issue #5)

main.add_command(load)

from medsettle.cli_internet import audit_flags, ecert, export_daily, quotas  # noqa: E402  (Internet+ care, issue #7)

main.add_command(ecert)
main.add_command(export_daily)
main.add_command(audit_flags)
main.add_command(quotas)

from medsettle.cli_demo import demo  # noqa: E402  (the demo against running servers)

main.add_command(demo)

from medsettle.cli_ops import backup  # noqa: E402  (operations)

main.add_command(backup)

from medsettle.cli_agreements import agreements  # noqa: E402  (internet hospitals' agreements)

main.add_command(agreements)
from medsettle.cli_db import db  # noqa: E402  (schema versions, PostgreSQL)

main.add_command(db)

if __name__ == "__main__":
    main()

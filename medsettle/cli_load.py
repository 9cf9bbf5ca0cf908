"""`medsettle load`: the load generator (issue #5). Composition only: the
engine is medsettle.client.loadgen, the run medsettle.client.loadrun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.option("--target", "targets", multiple=True, metavar="HOST:PORT",
              help="A running server (serve --with-echo for the baseline); repeat it for several servers of one "
                   "ledger: unary calls go to them in turn, stream i to the i-th. Default: start server processes "
                   "of its own (--servers, --db).")
@click.option("--db", default=None, metavar="FILE|URL",
              help="Own servers: their ledger, a postgresql:// URL (use a database for tests: the load's reference "
                   "data and credentials go into it) or a SQLite file. Default: a fresh SQLite file in a temporary "
                   "directory. Not read from MEDSETTLE_DB, so a load never lands in a ledger by accident.")
@click.option("--servers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Own servers: how many `serve` processes share the ledger (more than one needs PostgreSQL).")
@click.option("--token", default=None, envvar="MEDSETTLE_TOKEN", help="With --target: one bearer token for every call.")
@click.option("--tokens", "tokens_file", type=click.Path(exists=True, dir_okay=False),
              help="With --target: JSON object fixmedins_code -> bearer token (a credential acts for its own institution).")
@click.option("--metrics-url", "metrics_urls", multiple=True, metavar="URL",
              help="With --target: a server's /metrics (serve --metrics-listen), to report the writers' group "
                   "commits per phase (repeat it, one per target); the own servers' are always read.")
@click.option("--http-target", "http_targets", multiple=True, metavar="HOST:PORT",
              help="With --target: a server's JSON gateway (serve --http-listen), for the http mode (repeat it, "
                   "one per target); the own servers always serve one.")
@click.option("--mode", "modes", default="unary,stream,batch", show_default=True,
              help="unary, stream, batch (SettleBatchStream, --batch bills per message), http (2207 over the JSON "
                   "gateway, --concurrency calls in flight, against the gRPC unary echo), comma-separated.")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=64, show_default=True,
              help="Unary calls in flight.")
@click.option("--stream-concurrency", type=click.IntRange(1, 10_000), default=1024, show_default=True,
              help="Stream and batch modes: items in flight over all streams.")
@click.option("--streams", type=click.IntRange(1, 1_000), default=4, show_default=True,
              help="Stream and batch modes: concurrent streams (one institution each).")
@click.option("--batch", type=click.IntRange(1, 256), default=64, show_default=True,
              help="Batch mode: bills per SettleBatchStream message.")
@click.option("--duration", type=click.FloatRange(0.1, 86_400), default=None, help="Seconds per phase (default 10).")
@click.option("--count", type=click.IntRange(1, 100_000_000), default=None, help="Calls per phase instead of a duration.")
@click.option("--warmup", type=click.FloatRange(0, 600), default=1.0, show_default=True,
              help="Seconds per timed phase before measuring.")
@click.option("--no-echo", is_flag=True, help="Skip the echo baseline.")
@click.option("--persons", type=click.IntRange(6, 10_000_000), default=10_000, show_default=True,
              help="Synthetic insured persons the bills are drawn from (loaded into the own server).")
@click.option("--cross-region", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Share of bills of persons insured in another region.")
@click.option("--lines", type=click.IntRange(1, 500), default=3, show_default=True, help="Fee lines per bill.")
@click.option("--reversals", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of settlements reversed right after (unary mode).")
@click.option("--duplicates", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of calls that re-send the previous request with the same msgid (a retry).")
@click.option("--writer-batch", type=click.IntRange(1, 10_000), default=512, show_default=True,
              help="Own server: settlements per group commit.")
@click.option("--writer-overlap-min", type=click.IntRange(1, 10_000), default=None,
              help="Own server: its `serve --writer-overlap-min` (default: serve's).")
@click.option("--writer-process/--writer-thread", default=True, show_default=True,
              help="Own server: run it with `serve --writer-process` or `--writer-thread`.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the full report as JSON here ('-': stdout).")
def load(targets: tuple[str, ...], db: str | None, servers: int, token: str | None, tokens_file: str | None,
         metrics_urls: tuple[str, ...], http_targets: tuple[str, ...], modes: str, concurrency: int,
         stream_concurrency: int, streams: int, batch: int, duration: float | None, count: int | None, warmup: float,
         no_echo: bool, persons: int, cross_region: float, lines: int, reversals: float, duplicates: float,
         writer_batch: int, writer_overlap_min: int | None, writer_process: bool, json_path: str | None) -> None:
    """Load-test Settle, SettleStream, SettleBatchStream and the JSON gateway, with the no-op echo baseline in the same run.

    Reports calls/s, latency p50/p90/p99/max (HdrHistogram), errors by status
    code, settlements/s as a ratio of echo calls/s, and the server's RSS over
    the run (own servers only); with several targets, each one's share as
    well; on PostgreSQL, the database's CPU and WAL bytes per call. Only ever
    point it at a test server or a test database."""
    from medsettle.client.loadgen import BillMix
    from medsettle.client.loadrun import LoadPlan, OwnServerError, parse_modes, run, summary_lines
    from medsettle.ledger.storage.backends import is_postgres

    if duration is not None and count is not None:
        raise click.UsageError("give --duration or --count, not both")
    if not targets and (token or tokens_file or metrics_urls or http_targets):
        raise click.UsageError("--token/--tokens/--metrics-url/--http-target go with --target; "
                               "the own server is set up by the run")
    if targets and (db or servers > 1):
        raise click.UsageError("--db/--servers start servers of the run's own; with --target the servers are yours")
    if len(set(targets)) != len(targets):
        raise click.UsageError("--target: each server once")
    if servers > 1 and not (db and is_postgres(db)):
        raise click.BadParameter("SQLite has one writing server: more than one needs --db postgresql://...",
                                 param_hint="--servers")
    try:
        plan = LoadPlan(
            modes=tuple(parse_modes(modes)), concurrency=concurrency, stream_concurrency=stream_concurrency,
            streams=min(streams, stream_concurrency), duration_s=None if count is not None else (duration or 10.0),
            count=count, warmup_s=warmup, with_echo=not no_echo, writer_batch=writer_batch, batch=batch,
            writer_process=writer_process, writer_overlap_min=writer_overlap_min,
        )
        mix = BillMix(persons=persons, cross_region_share=cross_region, lines_per_bill=lines,
                      reversal_share=reversals, duplicate_share=duplicates)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if targets and "http" in plan.modes and len(http_targets) != len(targets):
        raise click.UsageError("--mode http with --target needs one --http-target per --target")
    if set(plan.modes) & {"stream", "batch"} and plan.streams < (fleet := len(targets) or servers):
        raise click.BadParameter(f"each stream goes to one server: give at least {fleet}", param_hint="--streams")
    tokens = json.loads(Path(tokens_file).read_text("utf-8")) if tokens_file else None
    for metrics_url in metrics_urls:
        from medsettle.client.metrics_scrape import scrape

        try:
            scrape(metrics_url)
        except (OSError, ValueError) as error:
            raise click.BadParameter(f"cannot read {metrics_url}: {error}", param_hint="--metrics-url") from None

    def progress(phase: dict) -> None:  # type: ignore[type-arg]
        click.echo(f"  done: {phase['service']} {phase['mode']} {phase['calls_per_s']:,.0f} calls/s", err=True)

    try:
        report = run(plan, mix, targets=targets, token=token, tokens=tokens, progress=progress,
                     metrics_urls=metrics_urls, db=db, servers=servers, http_targets=http_targets)
    except OwnServerError as error:
        raise click.ClickException(f"own server: {error}") from None
    for line in summary_lines(report):
        click.echo(line, err=json_path == "-")
    if json_path == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    failed = sum(p["calls_failed"] for p in report["phases"])
    if failed and not (reversals or duplicates):
        click.echo(f"{failed} calls failed", err=True)

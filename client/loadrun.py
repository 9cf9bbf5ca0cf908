"""A whole load run: the servers (given targets, or processes of its own:
one on a fresh SQLite file, or several on one PostgreSQL database), the
echo baseline and the settlement phases against them in the same run, the
servers' RSS over time, their writers' batches per phase (read from their
/metrics), the database's CPU and WAL per phase (PostgreSQL), one report.

An own server is `medsettle serve --with-echo` in its own process, exactly
as operators run it: the reference data with the synthetic persons goes in
with `medsettle load-reference`, one credential per hospital is provisioned
in its database, and the generator runs in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import grpc

from medsettle.client.db_probe import PostgresProbe, phase_cost
from medsettle.client.loadgen import (
    HOSPITALS,
    MODES,
    BillFactory,
    BillMix,
    Credentials,
    Phase,
    RssSampler,
    Target,
    cpu_s,
    http_to_grpc,
    iter_phases,
    ratios,
    run_phase,
    synthetic_reference,
    trees_cpu_s,
)
from medsettle.client.metrics_scrape import Samples, scrape, value
from medsettle.ledger.storage.backends import is_postgres

SERVER_START_TIMEOUT_S = 120.0  # loading 10^5 persons takes a few seconds
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 1 << 20), ("grpc.max_send_message_length", 1 << 20)]


@dataclass(frozen=True, slots=True)
class LoadPlan:
    modes: tuple[str, ...] = ("unary", "stream", "batch")
    concurrency: int = 64
    stream_concurrency: int = 1024  # items in flight over all streams (stream mode)
    streams: int = 4
    batch: int = 64  # batch mode: bills per SettleBatchStream message
    duration_s: float | None = 10.0
    count: int | None = None
    warmup_s: float = 1.0
    with_echo: bool = True
    writer_batch: int = 512
    writer_process: bool = True  # own server: `serve --writer-process` (else --writer-thread)
    writer_overlap_min: int | None = None  # own server: `serve --writer-overlap-min` (None: serve's default)
    rss_interval_s: float = 1.0


class OwnServerError(Exception):
    """An own server could not be set up or started (the message says why)."""


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    target: str
    metrics_url: str  # its Prometheus endpoint
    http_base: str  # its JSON gateway, http://127.0.0.1:PORT


@dataclass(frozen=True)
class Servers:
    """What a run drives and what it can watch of it."""

    targets: tuple[str, ...]
    credentials: Credentials
    pids: tuple[int, ...] = ()  # own server processes: their CPU and RSS
    metrics_urls: tuple[str, ...] = ()  # their /metrics: the writers' group commits
    database: PostgresProbe | None = None  # PostgreSQL: its CPU and WAL per phase
    http_bases: tuple[str, ...] = ()  # their JSON gateways (http://HOST:PORT), one per target: the http mode


def _serving_line(log_path: Path) -> dict[str, Any]:
    """The server's `serving` log line: the ports it bound."""
    for line in log_path.read_text("utf-8", "replace").splitlines():
        if '"serving"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise OwnServerError("the server logged no `serving` line")


def _medsettle(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsettle", *args]


def describe_db(db: str) -> str:
    """The database for a report: PostgreSQL and its URL without the password, or 'SQLite file'."""
    from medsettle.ledger.storage.pg_connect import describe

    return f"PostgreSQL {describe(db)}" if is_postgres(db) else "SQLite file"


def _provision(db: str) -> dict[str, str]:
    """One credential per load hospital, in the ledger's own credential table."""
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.storage.credentials import CredentialStore

    with CredentialStore(db) as store:
        return store.provision(sorted(HOSPITALS), "load-generator", SystemClock().now()).tokens


@contextlib.contextmanager
def own_servers(persons: int, writer_batch: int, workdir: Path | None = None, writer_process: bool = True,
                db: str | None = None, count: int = 1, writer_overlap_min: int | None = None) -> Iterator[tuple[list[ServerProcess], dict[str, str]]]:
    """`count` fresh server processes on 127.0.0.1 sharing one ledger (db: a
    fresh SQLite file in a temporary folder by default, or a postgresql://
    URL), with the load's reference data and one credential per hospital
    (the tokens are yielded with the servers); stopped with SIGTERM (drained) on exit."""
    from medsettle.ledger.reference.loader import sample_document

    if count < 1 or (count > 1 and not (db and is_postgres(db))):
        raise ValueError(f"servers: SQLite has one writing server; {count} servers need a postgresql:// database")
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medsettle-load-")))
        db = db or str(root / "ledger.db")
        reference = root / "reference.json"
        reference.write_text(json.dumps(synthetic_reference(sample_document(), persons)), "utf-8")
        loaded = subprocess.run(_medsettle("load-reference", "--db", db, str(reference)), capture_output=True, text=True)
        if loaded.returncode != 0:
            raise OwnServerError(f"loading the reference data failed: {loaded.stderr.strip()[-2000:]}")
        tokens = _provision(db)
        servers = []
        for number in range(1, count + 1):
            servers.append(stack.enter_context(_server_process(root / f"server{number}", db, writer_batch, writer_process,
                                                                   writer_overlap_min)))
        yield servers, tokens


@contextlib.contextmanager
def _server_process(home: Path, db: str, writer_batch: int, writer_process: bool,
                    writer_overlap_min: int | None = None) -> Iterator[ServerProcess]:
    """One `medsettle serve --with-echo` on a free port, its log in home."""
    home.mkdir(parents=True, exist_ok=True)
    port_file, log_path = home / "port", home / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _medsettle("serve", "--db", db, "--listen", "127.0.0.1:0", "--port-file", str(port_file),
                       "--with-echo", "--log-format", "json",  # default level (info): nothing is logged per settled call
                       "--metrics-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                       "--writer-batch", str(writer_batch), "--writer-process" if writer_process else "--writer-thread",
                       *(("--writer-overlap-min", str(writer_overlap_min)) if writer_overlap_min else ())),
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None:
                    raise OwnServerError(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise OwnServerError("server did not start in time")
                time.sleep(0.05)
            serving = _serving_line(log_path)
            yield ServerProcess(process, f"127.0.0.1:{port_file.read_text().strip()}",
                                f"http://127.0.0.1:{serving['metrics_port']}/metrics", f"http://127.0.0.1:{serving['http_port']}")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def run_load(servers: Servers, plan: LoadPlan, mix: BillMix, progress: Any = None) -> dict[str, Any]:
    """Every phase of the plan against the servers' targets, one after the other."""
    if "http" in plan.modes and len(servers.http_bases) != len(servers.targets):
        raise ValueError("the http mode needs each target's gateway address")
    bills = BillFactory(mix)
    sampler = RssSampler(servers.pids, plan.rss_interval_s) if servers.pids else None
    phases: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for index, name in enumerate(servers.targets):
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(name, options=CHANNEL_OPTIONS))
            await asyncio.wait_for(channel.channel_ready(), 30)
            http_base = servers.http_bases[index] if index < len(servers.http_bases) else None
            targets.append(Target(name, channel, servers.credentials, http_base))
        if sampler is not None:
            sampler.start()
        started = time.monotonic()
        for mode in plan.modes:
            concurrency = plan.concurrency if mode in ("unary", "http") else plan.stream_concurrency
            for phase in iter_phases((mode,), plan.with_echo, concurrency=concurrency, duration_s=plan.duration_s,
                                     count=plan.count, streams=min(plan.streams, concurrency), warmup_s=plan.warmup_s,
                                     batch=plan.batch):
                phases.append(await _measured_phase(servers, targets, phase, bills))
                if progress is not None:
                    progress(phases[-1])
        wall_s = time.monotonic() - started
        if sampler is not None:
            await sampler.stop()
    report: dict[str, Any] = {
        "target": ", ".join(servers.targets),
        "targets": list(servers.targets),
        "plan": asdict(plan),
        "mix": asdict(mix),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "grpc": grpc.__version__},
        "phases": phases,
        "ratio_to_echo": ratios(phases),
        "http_to_grpc_unary": http_to_grpc(phases),
        "wall_s": round(wall_s, 1),
    }
    if sampler is not None:
        report["server_rss"] = sampler.summary()
    return report


async def _measured_phase(servers: Servers, targets: list[Target], phase: Phase, bills: BillFactory) -> dict[str, Any]:
    """One phase with what it cost: CPU per call in the servers, the
    generator and the database, WAL bytes, the writers' group commits."""
    writer_before = await _scrape_all(servers.metrics_urls)
    database_before = await asyncio.to_thread(servers.database.sample) if servers.database else None
    server_cpu, client_cpu = trees_cpu_s(servers.pids), cpu_s(os.getpid())
    result = await run_phase(targets, phase, bills)
    calls = result["calls_with_warmup"]
    result["cpu_ms_per_call"] = _cpu_per_call(server_cpu, servers.pids, client_cpu, calls)
    if servers.database is not None and database_before is not None:
        result["database"] = phase_cost(database_before, await asyncio.to_thread(servers.database.sample), calls)
    writer_after = await _scrape_all(servers.metrics_urls)
    if writer_before is not None and writer_after is not None:
        result["writer"] = _writer_batches(writer_before, writer_after)
    return result


async def _scrape_all(metrics_urls: Sequence[str]) -> Samples | None:
    """The servers' metrics summed, or None if one of them cannot be read."""
    total: Samples = {}
    for url in metrics_urls:
        samples = await _scrape_or_none(url)
        if samples is None:
            return None
        for key, sample in samples.items():
            total[key] = total.get(key, 0.0) + sample
    return total if metrics_urls else None


async def _scrape_or_none(metrics_url: str | None) -> Samples | None:
    """The server's metrics, or None if there are none to read (no URL, or it
    does not answer now): a phase then reports no writer figures, the run goes on."""
    if metrics_url is None:
        return None
    try:
        return await asyncio.to_thread(scrape, metrics_url)
    except (OSError, ValueError):
        return None


def _writer_batches(before: Samples, after: Samples) -> dict[str, float]:
    """The group commits of a phase (its warm-up included): how many, how
    many writes each held, how long each took from send to outcomes, and
    (writer-process mode) the writer process's CPU per batch and per write."""
    def spent(name: str) -> float:
        return value(after, name) - value(before, name)

    # The histograms count the batches sent to the writer (not those whose callers had all given up).
    batches, commands = spent("medsettle_writer_batch_commands_count"), spent("medsettle_writer_batch_commands_sum")
    figures = {
        "batches": int(batches),
        "commands": int(commands),
        "commands_per_batch": round(commands / batches, 2) if batches else 0.0,
        "batch_ms_mean": round(1000 * spent("medsettle_writer_batch_seconds_sum") / batches, 3) if batches else 0.0,
    }
    writer_cpu = ("medsettle_writer_process_cpu_seconds_total", ())
    if batches and commands and writer_cpu in after and writer_cpu in before:  # a restarted writer's CPU starts anew
        cpu_s = after[writer_cpu] - before[writer_cpu]
        if cpu_s >= 0:
            figures["writer_cpu_ms_per_batch"] = round(1000 * cpu_s / batches, 3)
            figures["writer_cpu_us_per_write"] = round(1e6 * cpu_s / commands, 1)
    return figures


def _cpu_per_call(server_before: float | None, server_pids: Sequence[int], client_before: float | None,
                  calls: int) -> dict[str, float]:
    """CPU milliseconds per call in the servers and in the generator: less
    noisy than calls/s on a shared machine (it does not count waiting)."""
    spent = {}
    if server_pids and server_before is not None and (now := trees_cpu_s(server_pids)) is not None:
        spent["server"] = now - server_before
    if client_before is not None and (now := cpu_s(os.getpid())) is not None:
        spent["generator"] = now - client_before
    return {who: round(1000 * seconds / max(1, calls), 4) for who, seconds in spent.items()}


def run(plan: LoadPlan, mix: BillMix, targets: Sequence[str] = (), token: str | None = None,
        tokens: dict[str, str] | None = None, progress: Any = None, metrics_urls: Sequence[str] = (),
        db: str | None = None, servers: int = 1, http_targets: Sequence[str] = ()) -> dict[str, Any]:
    """A load run: against targets if given (their writers' commits read
    from metrics_urls, their gateways at http_targets, if given), else
    against `servers` server processes of its own on db (default: a fresh
    SQLite file), which serve the gateway too."""
    if targets:
        return asyncio.run(run_load(Servers(tuple(targets), Credentials(tokens, token), metrics_urls=tuple(metrics_urls),
                                            http_bases=tuple(f"http://{t}" for t in http_targets)), plan, mix, progress))
    with own_servers(mix.persons, plan.writer_batch, writer_process=plan.writer_process, db=db,
                     count=servers, writer_overlap_min=plan.writer_overlap_min) as (processes, own_tokens), _probe(db) as database:
        fleet = Servers(tuple(p.target for p in processes), Credentials(own_tokens),
                        tuple(p.process.pid for p in processes), tuple(p.metrics_url for p in processes), database,
                        tuple(p.http_base for p in processes))
        report = asyncio.run(run_load(fleet, plan, mix, progress))
    where = describe_db(db) if db else "fresh SQLite file"
    report["target"] = f"{len(processes)} own server process{'es' if len(processes) > 1 else ''} (127.0.0.1, {where})"
    report["database"] = {"kind": "postgresql" if database else "sqlite", "where": where,
                          **({"cpu_measured": database.local} if database else {})}
    return report


@contextlib.contextmanager
def _probe(db: str | None) -> Iterator[PostgresProbe | None]:
    if not (db and is_postgres(db)):
        yield None
        return
    probe = PostgresProbe(db)
    try:
        yield probe
    finally:
        probe.close()


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as a few readable lines."""
    lines = []
    for p in report["phases"]:
        lat = p["latency_ms"]
        errors = ", ".join(f"{k} {v}" for k, v in sorted(p["errors"].items())) or "none"
        lines.append(
            f"{p['service']:>6} {p['mode']:<6} in-flight {p['concurrency']:>5}: {p['calls_per_s']:>9,.0f} calls/s"
            f"  p50 {lat['p50']:.1f} p90 {lat['p90']:.1f} p99 {lat['p99']:.1f} max {lat['max']:.1f} ms"
            f"  ok {p['calls_ok']:,}  errors: {errors}"
            + (f"  server CPU {cpu['server']:.3f} ms/call" if (cpu := p.get("cpu_ms_per_call", {})).get("server") else "")
            + (f"  writer {w['commands_per_batch']:.1f} writes/commit, {w['batch_ms_mean']:.1f} ms each"
               if (w := p.get("writer", {})).get("batches") else "")
            + (f"  database CPU {d['cpu_ms_per_call']:.3f} ms/call" if "cpu_ms_per_call" in (d := p.get("database", {}))
               else "")
            + (f", WAL {d['wal_bytes_per_call']:,.0f} B/call" if "wal_bytes_per_call" in d else "")
        )
        if len(p["by_target"]) > 1:
            for name, share in p["by_target"].items():
                lines.append(f"{'':>14}{name}: {share['calls_per_s']:>9,.0f} calls/s  p50 {share['latency_ms']['p50']:.1f}"
                             f" p99 {share['latency_ms']['p99']:.1f} ms  ok {share['calls_ok']:,}"
                             f"  failed {share['calls_failed']:,}")
    for mode, ratio in report["ratio_to_echo"].items():
        lines.append(f"settle/echo ({mode}): {ratio:.2f}" if mode != "http" else
                     f"settle over the HTTP gateway / gRPC unary echo: {ratio:.2f}")
    if versus := report.get("http_to_grpc_unary"):
        lines.append(f"HTTP gateway / gRPC unary settlements: {versus['calls_per_s']:.2f} x the calls/s, "
                     f"{versus['p99']:.2f} x the p99")
    rss = report.get("server_rss")
    if rss and rss.get("samples"):
        lines.append(
            f"server RSS: first {rss['first_mib']} MiB, last {rss['last_mib']} MiB, peak {rss['peak_mib']} MiB, "
            f"second-half growth {rss['second_half_growth_mib']} MiB ({rss['samples']} samples)"
        )
    return lines


def parse_modes(text: str) -> Sequence[str]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes must be among {', '.join(MODES)} (comma-separated), got {text!r}")
    return modes

"""A whole load run: the server process (its own, on a fresh SQLite file,
unless a target is given), the echo baseline and the settlement phases
against it in the same run, the server's RSS over time, its writer's
batches per phase (read from its /metrics), one report.

The server is `medsettle serve --with-echo` in its own process, exactly as
operators run it: the reference data with the synthetic persons goes in with
`medsettle load-reference`, one credential per hospital is provisioned in
its database, and the generator runs in this process.
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

from medsettle.client.metrics_scrape import Samples, scrape, value
from medsettle.client.loadgen import (
    HOSPITALS,
    MODES,
    BillFactory,
    BillMix,
    Credentials,
    RssSampler,
    cpu_s,
    tree_cpu_s,
    iter_phases,
    ratios,
    run_phase,
    synthetic_reference,
)

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
    rss_interval_s: float = 1.0


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    target: str
    db_path: Path
    tokens: dict[str, str]
    metrics_url: str  # its Prometheus endpoint


def _metrics_url(log_path: Path) -> str:
    """The /metrics address the server's `serving` log line gives."""
    for line in log_path.read_text("utf-8", "replace").splitlines():
        if '"serving"' in line:
            return f"http://127.0.0.1:{json.loads(line)['metrics_port']}/metrics"
    raise RuntimeError("the server logged no `serving` line")


def _medsettle(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsettle", *args]


@contextlib.contextmanager
def own_server(persons: int, writer_batch: int, workdir: Path | None = None,
               writer_process: bool = True) -> Iterator[ServerProcess]:
    """A fresh server process on 127.0.0.1 with the load's reference data
    and one credential per hospital; stopped with SIGTERM (drained) on exit."""
    from medsettle.ledger.clock import SystemClock
    from medsettle.ledger.reference.loader import sample_document
    from medsettle.ledger.storage.credentials import CredentialStore

    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medsettle-load-")))
        db_path = root / "ledger.db"
        reference = root / "reference.json"
        reference.write_text(json.dumps(synthetic_reference(sample_document(), persons)), "utf-8")
        subprocess.run(_medsettle("load-reference", "--db", str(db_path), str(reference)),
                       check=True, stdout=subprocess.DEVNULL)
        with CredentialStore(db_path) as store:
            tokens = store.provision(sorted(HOSPITALS), "load-generator", SystemClock().now()).tokens
        port_file = root / "port"
        log = (root / "server.log").open("wb")
        stack.callback(log.close)
        process = subprocess.Popen(
            _medsettle("serve", "--db", str(db_path), "--listen", "127.0.0.1:0", "--port-file", str(port_file),
                       "--with-echo", "--log-format", "json",  # default level (info): nothing is logged per settled call
                       "--metrics-listen", "127.0.0.1:0",
                       "--writer-batch", str(writer_batch), "--writer-process" if writer_process else "--writer-thread"),
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}: {(root / 'server.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start in time")
                time.sleep(0.05)
            yield ServerProcess(process, f"127.0.0.1:{port_file.read_text().strip()}", db_path, tokens,
                                _metrics_url(root / "server.log"))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def run_load(target: str, plan: LoadPlan, mix: BillMix, credentials: Credentials,
                   server_pid: int | None = None, progress: Any = None,
                   metrics_url: str | None = None) -> dict[str, Any]:
    """Every phase of the plan against target, one after the other."""
    bills = BillFactory(mix)
    sampler = RssSampler(server_pid, plan.rss_interval_s) if server_pid else None
    phases: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        if sampler is not None:
            sampler.start()
        started = time.monotonic()
        for mode in plan.modes:
            concurrency = plan.concurrency if mode == "unary" else plan.stream_concurrency
            for phase in iter_phases((mode,), plan.with_echo, concurrency=concurrency, duration_s=plan.duration_s,
                                     count=plan.count, streams=min(plan.streams, concurrency), warmup_s=plan.warmup_s,
                                     batch=plan.batch):
                writer_before = await _scrape_or_none(metrics_url)
                server_cpu, client_cpu = tree_cpu_s(server_pid) if server_pid else None, cpu_s(os.getpid())
                result = await run_phase(channel, phase, bills, credentials)
                result["cpu_ms_per_call"] = _cpu_per_call(server_cpu, server_pid, client_cpu, result["calls_with_warmup"])
                writer_after = await _scrape_or_none(metrics_url)
                if writer_before is not None and writer_after is not None:
                    result["writer"] = _writer_batches(writer_before, writer_after)
                phases.append(result)
                if progress is not None:
                    progress(result)
        wall_s = time.monotonic() - started
        if sampler is not None:
            await sampler.stop()
    report: dict[str, Any] = {
        "target": target,
        "plan": asdict(plan),
        "mix": asdict(mix),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "grpc": grpc.__version__},
        "phases": phases,
        "ratio_to_echo": ratios(phases),
        "wall_s": round(wall_s, 1),
    }
    if sampler is not None:
        report["server_rss"] = sampler.summary()
    return report


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
    many writes each held, how long each took from send to outcomes."""
    def spent(name: str) -> float:
        return value(after, name) - value(before, name)

    # The histograms count the batches sent to the writer (not those whose callers had all given up).
    batches, commands = spent("medsettle_writer_batch_commands_count"), spent("medsettle_writer_batch_commands_sum")
    return {
        "batches": int(batches),
        "commands": int(commands),
        "commands_per_batch": round(commands / batches, 2) if batches else 0.0,
        "batch_ms_mean": round(1000 * spent("medsettle_writer_batch_seconds_sum") / batches, 3) if batches else 0.0,
    }


def _cpu_per_call(server_before: float | None, server_pid: int | None, client_before: float | None,
                  calls: int) -> dict[str, float]:
    """CPU milliseconds per call in the server and in the generator: less
    noisy than calls/s on a shared machine (it does not count waiting)."""
    spent = {}
    if server_pid and server_before is not None and (now := tree_cpu_s(server_pid)) is not None:
        spent["server"] = now - server_before
    if client_before is not None and (now := cpu_s(os.getpid())) is not None:
        spent["generator"] = now - client_before
    return {who: round(1000 * seconds / max(1, calls), 4) for who, seconds in spent.items()}


def run(plan: LoadPlan, mix: BillMix, target: str | None = None, token: str | None = None,
        tokens: dict[str, str] | None = None, progress: Any = None, metrics_url: str | None = None) -> dict[str, Any]:
    """A load run: against target if given (its writer's commits read from
    metrics_url, if given), else against a server of its own."""
    if target is not None:
        return asyncio.run(run_load(target, plan, mix, Credentials(tokens, token), None, progress, metrics_url))
    with own_server(mix.persons, plan.writer_batch, writer_process=plan.writer_process) as server:
        report = asyncio.run(run_load(server.target, plan, mix, Credentials(server.tokens), server.process.pid, progress,
                                      server.metrics_url))
        report["target"] = "own server process (127.0.0.1, fresh SQLite file)"
        return report


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
        )
    for mode, ratio in report["ratio_to_echo"].items():
        lines.append(f"settle/echo ({mode}): {ratio:.2f}")
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

"""What the server counts, and its Prometheus endpoint (`medsettle serve
--metrics-listen HOST:PORT`, text format at /metrics).

The hot path only adds to plain ints and fixed histograms (ledger/stats.py),
on the thread that owns them: the event loop counts calls and outcomes,
the writer's answer thread its batches. A scrape reads them from the HTTP
thread and builds the exposition then, so nothing on the hot path takes a
lock or formats a label. Every RPC handler, the echo baseline's included,
is measured the same way, so the load benchmark's ratio stays fair."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from medsettle.ledger.stats import FixedHistogram
from medsettle.ledger.storage.backends import is_postgres
from medsettle.server.health import WAL_HELD_BACK, wal_held_back
from medsettle.server.status import aborted_code

# Seconds from a call's first handler line to its answer (a stream: its whole life).
CALL_SECONDS_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OK = "OK"


class CallStats:
    """Per RPC method: calls by final gRPC status code, their handling
    seconds, and the outcome of every request that reached the service (a
    unary call, or one item of a settlement stream): OK or the reason code
    the client sees in its ErrorInfo. Updated on the event loop only."""

    def __init__(self, methods: Iterable[str]) -> None:
        names = tuple(methods)
        self.codes: dict[str, dict[str, int]] = {name: {} for name in names}
        self.in_flight = dict.fromkeys(names, 0)  # calls whose handler runs now
        self.seconds = {name: FixedHistogram(CALL_SECONDS_BOUNDS) for name in names}
        self.outcomes: dict[str, dict[str, int]] = {name: {} for name in names}

    def started(self, method: str) -> None:
        self.in_flight[method] += 1

    def call(self, method: str, code: str, seconds: float) -> None:
        """A call whose handler ran (started) has finished."""
        self.in_flight[method] -= 1
        counts = self.codes[method]
        counts[code] = counts.get(code, 0) + 1
        self.seconds[method].observe(seconds)

    def rejected(self, method: str, code: str) -> None:
        """A call refused before its handler ran (no credential, undecodable bytes)."""
        counts = self.codes[method]
        counts[code] = counts.get(code, 0) + 1

    def outcome(self, method: str, result: str) -> None:
        counts = self.outcomes[method]
        counts[result] = counts.get(result, 0) + 1


def method_names(*services: ServiceDescriptor) -> list[str]:
    return [method.name for service in services for method in service.methods]


def measured(servicer: Any, service: ServiceDescriptor, stats: CallStats, gate: Any = None) -> SimpleNamespace:
    """The servicer's RPC methods, each counting its call in stats, and,
    with a gate (server/auth.py Gate), authenticated first: a call refused
    there is counted as rejected, its handler never runs. Wrapped once,
    when the server is built: no interceptor runs per call, and a known
    caller costs no extra coroutine."""
    wrapped = {}
    for method in service.methods:
        handler = getattr(servicer, method.name)
        # grpc.aio calls a handler by its kind; a plain function here (one not
        # implemented, say) would become a coroutine and answer UNKNOWN, not UNIMPLEMENTED.
        expected = inspect.isasyncgenfunction if method.server_streaming else inspect.iscoroutinefunction
        if not expected(handler):
            raise TypeError(f"{method.full_name}: the handler must be an async "
                            f"{'generator' if method.server_streaming else 'function'}")
        wrap = _measured_stream if method.server_streaming else _measured_unary
        wrapped[method.name] = wrap(method.name, handler, stats, gate, method.client_streaming)
    return SimpleNamespace(**wrapped)


async def _admitted(gate: Any, name: str, request: Any, context: grpc.aio.ServicerContext,
                    stats: CallStats, streamed: bool) -> Any:
    """The request (or a client stream's requests, each checked) once the gate let the call in."""
    try:
        await gate.admit(None if streamed else request, context, name)
    except grpc.aio.AbortError:
        stats.rejected(name, aborted_code(context))
        raise
    return gate.each_decodable(request, context) if streamed else request


def _final_code(error: BaseException, context: grpc.aio.ServicerContext) -> str:
    if isinstance(error, grpc.aio.AbortError):
        return aborted_code(context)
    # A call ended from outside: cancelled by gRPC (a unary call, or a stream
    # waiting on work) or closed while it waited for its client to read.
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        remaining_s = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining_s is not None and remaining_s <= 0 else "CANCELLED"
    return "UNKNOWN"  # what gRPC answers for an exception a handler did not expect


def _measured_unary(name: str, handler: Callable[..., Any], stats: CallStats, gate: Any = None,
                    streamed: bool = False) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if gate is not None and (streamed or not gate.admits(request, context)):
            request = await _admitted(gate, name, request, context, stats, streamed)
        started = time.perf_counter()
        stats.started(name)
        code = OK
        try:
            return await handler(request, context)
        except BaseException as error:
            code = _final_code(error, context)
            raise
        finally:
            stats.call(name, code, time.perf_counter() - started)
    return unary


def _measured_stream(name: str, handler: Callable[..., Any], stats: CallStats, gate: Any = None,
                     streamed: bool = False) -> Callable[..., Any]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if gate is not None and (streamed or not gate.admits(request, context)):
            request = await _admitted(gate, name, request, context, stats, streamed)
        started = time.perf_counter()
        stats.started(name)
        code = OK
        try:
            # aclosing: a stream closed early runs the handler's own cleanup now, not at garbage collection.
            async with contextlib.aclosing(handler(request, context)) as answers:
                async for answer in answers:
                    yield answer
        except BaseException as error:
            code = _final_code(error, context)
            raise
        finally:
            stats.call(name, code, time.perf_counter() - started)
    return stream


def _histogram(name: str, documentation: str, labels: list[str],
               series: Iterable[tuple[list[str], FixedHistogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for label_values, histogram in series:
        buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
        family.add_metric(label_values, buckets, histogram.total)
    return family


def _counter_by(name: str, documentation: str, labels: list[str],
                by_method: dict[str, dict[str, int]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for method, counts in by_method.items():
        for key, value in counts.copy().items():  # copy(): one step under the GIL, as the loop may add a key
            family.add_metric([method, key], value)
    return family


@dataclass(eq=False)  # the registry keys collectors by identity
class ServerCollector(Collector):
    """The server's own metrics, read from its counters at each scrape."""

    stats: CallStats
    service: Any  # ledger.service.SettlementService
    version: str

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: collect() is cheap and never fails

    def collect(self) -> Iterator[Metric]:
        yield self._info()
        yield _counter_by("medsettle_calls", "RPCs finished, by method and gRPC status code "
                          "(UNAUTHENTICATED and undecodable requests counted before any handler ran).",
                          ["method", "code"], self.stats.codes)
        in_flight = GaugeMetricFamily("medsettle_calls_in_flight", "Calls whose handler runs now.", labels=["method"])
        for method, count in self.stats.in_flight.copy().items():
            in_flight.add_metric([method], count)
        yield in_flight
        yield _histogram("medsettle_call_seconds", "Seconds an RPC's handler took, from its start (after "
                         "authentication) to its answer (a stream: its whole life).", ["method"],
                         (([method], histogram) for method, histogram in self.stats.seconds.items() if histogram.count))
        yield _counter_by("medsettle_outcomes", "Requests the service answered (unary calls, settlement "
                          "stream items), by result: OK or the reason code of the refusal.",
                          ["method", "result"], self.stats.outcomes)
        yield from self._writer()
        if not is_postgres(self.service.db):
            yield from self._wal()

    def _info(self) -> GaugeMetricFamily:
        info = GaugeMetricFamily("medsettle_build_info", "The running medsettle version.", labels=["version"])
        info.add_metric([self.version], 1)
        return info

    def _writer(self) -> Iterator[Metric]:
        writer = self.service.writer
        yield GaugeMetricFamily("medsettle_writer_queue_commands", "Writes waiting for the group-commit writer.",
                                value=writer.queue_length())
        yield CounterMetricFamily("medsettle_writer_batches", "Batches the writer took (committed, failed whole, or "
                                  "empty: every caller had given up).", value=writer.batches_committed)
        yield CounterMetricFamily("medsettle_writer_commands", "Writes in those batches.", value=writer.commands_done)
        yield _histogram("medsettle_writer_batch_commands", "Writes per batch sent to the writer (one transaction).", [],
                         [([], writer.batch_commands)])
        yield _histogram("medsettle_writer_batch_seconds", "Seconds from sending a batch to the writer to having its "
                         "outcomes: its COMMIT and fsync, and the wait for the batch ahead of it (two are in flight).",
                         [], [([], writer.batch_seconds)])
        conflicts, key_reruns = self.service.reruns.read()
        yield CounterMetricFamily("medsettle_writer_conflict_reruns", "Batches rolled back because another writer "
                                  "changed what they read (PostgreSQL: a unique key taken meanwhile, a deadlock, a "
                                  "serialization failure, a lock waited on too long) and run again; the fifth of one "
                                  "batch fails it with STORAGE_UNAVAILABLE.", value=conflicts)
        yield CounterMetricFamily("medsettle_writer_key_reruns", "Batches run again because a settlement taken for "
                                  "new was stored already (a replayed msgid; the sole writer's insert-first "
                                  "idempotency, SQLite).", value=key_reruns)
        yield GaugeMetricFamily("medsettle_writer_up", "1 while writes can be taken; 0 while the writer process is "
                                "being restarted or cannot be (health says NOT_SERVING then).",
                                value=int(self.service.writer_unavailable() is None))
        process = self.service.writer_process
        yield GaugeMetricFamily("medsettle_ledger_fenced", "1 once a failed fsync of the SQLite WAL fenced the "
                                "ledger: writes are refused and no writer is restarted until the operator's runbook "
                                "(docs/operations.md); health says NOT_SERVING.",
                                value=int(process is not None and process.fenced is not None))
        if process is not None:
            yield CounterMetricFamily("medsettle_writer_restarts", "Writer processes started to replace one that died.",
                                      value=process.restarts)
            yield CounterMetricFamily("medsettle_writer_restart_failures",
                                      "Tries to replace a dead writer process that failed.", value=process.restart_failures)


    def _wal(self) -> Iterator[Metric]:
        """The SQLite WAL checkpointer's figures (ledger/storage/wal_figures.py); zeros before the first write."""
        state = self.service.wal_figures.read()
        now_s = time.time()
        yield CounterMetricFamily("medsettle_wal_checkpoints", "PASSIVE checkpoints of the SQLite WAL run (whether "
                                  "they copied every frame or a reader stopped them short).", value=state.checkpoints)
        yield CounterMetricFamily("medsettle_wal_checkpoint_failures", "WAL checkpoint rounds that failed (no "
                                  "connection, an error; retried with a growing wait up to 2 s), and RESTART "
                                  "checkpoints that did.", value=state.failures)
        yield CounterMetricFamily("medsettle_wal_restarts", "RESTART checkpoints that had the WAL written again "
                                  "from its start.", value=state.restarts)
        yield GaugeMetricFamily("medsettle_wal_checkpoint_failing", "1 while the checkpoint rounds fail (since the "
                                "last one that succeeded).", value=int(bool(state.failing_since_s)))
        yield GaugeMetricFamily("medsettle_wal_frames", "Frames (pages) in the WAL at the last checkpoint.",
                                value=state.wal_frames)
        yield GaugeMetricFamily("medsettle_wal_uncopied_frames", "Frames of the WAL that the last checkpoint could "
                                "not copy into the database file (a reader holds them back).",
                                value=state.uncopied_frames)
        yield GaugeMetricFamily("medsettle_wal_bound_frames", "The WAL's bound: past it, once all copied, the WAL "
                                "is written again from its start.", value=state.bound_frames)
        yield GaugeMetricFamily("medsettle_wal_bytes", "Size of the WAL file (-wal) now.", value=_file_bytes(
            f"{self.service.db}-wal"))
        lag_s = max(0.0, now_s - state.copied_at_s) if state.started else 0.0
        yield GaugeMetricFamily("medsettle_wal_checkpoint_lag_seconds", "Seconds since the WAL was last seen wholly "
                                "copied into the database file (at most about 0.1 s when healthy).", value=lag_s)
        degraded = GaugeMetricFamily("medsettle_degraded", "1 while the server is degraded for the reason given "
                                     "(it still settles; see the log line with the same reason).", labels=["reason"])
        degraded.add_metric([WAL_HELD_BACK], int(wal_held_back(state, now_s) is not None))
        yield degraded


def _file_bytes(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # no WAL file (no connection open, or the last one closed)
        return 0


@dataclass
class MetricsEndpoint:
    httpd: Any  # wsgiref's server, on a daemon thread
    host: str  # as given to listen on
    port: int

    @property
    def url(self) -> str:
        """Where this machine reaches it (a wildcard host: through loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_metrics(address: str, stats: CallStats, service: Any) -> MetricsEndpoint:
    """Serves /metrics at address ("host:0" picks a free port) on a thread of its own."""
    from importlib.metadata import version

    from medsettle.server.clearing_metrics import ClearingCollector

    host, port = split_host_port(address)
    registry = CollectorRegistry()
    registry.register(ServerCollector(stats, service, version("medsettle")))
    registry.register(ClearingCollector(service.db))  # the ledger as given (a PostgreSQL store's path hides the password)
    ProcessCollector(registry=registry)  # this process: CPU seconds, resident memory, open fds
    if service.writer_process is not None:
        ProcessCollector(namespace="medsettle_writer", pid=lambda: service.writer_process.pid, registry=registry)
    httpd, _ = start_http_server(port, host, registry)  # OSError if it cannot listen there
    return MetricsEndpoint(httpd, host, httpd.server_port)


def split_host_port(address: str) -> tuple[str, int]:
    """HOST:PORT (port 0..65535; an IPv6 host in brackets) as (host, port)."""
    host, _, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not host or (":" in host and not bracketed) or not port.isdigit() or int(port) > 65_535:
        raise ValueError(f"must be HOST:PORT with a port of 0..65535, got {address!r}")
    return (host[1:-1] if bracketed else host), int(port)

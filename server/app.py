"""Bootstrap: create_server(address, service) -> (server, port), and serve()
with health checking, reflection, metrics, bounds, and graceful shutdown on
SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from medsettle.ledger.service import SettlementService
from medsettle.server.auth import Authorizer, CredentialCache, Gate, tolerant
from medsettle.server.collector import settle_collector
from medsettle.server.gateway.http import GATEWAY_METHODS, GatewayLimits, RunningGateway, start_gateway
from medsettle.server.health import WalWatch
from medsettle.server.logs import get_logger
from medsettle.server.metrics import CallStats, MetricsEndpoint, measured, method_names, start_metrics
from medsettle.server.servicer import RAW_ANSWER_METHODS, RAW_BYTES_METHODS, SettlementServicer
from medsettle.server.tls import TlsFiles, server_credentials, server_ssl_context
from medsettle.v1 import echo_pb2, echo_pb2_grpc, settlement_pb2

SETTLEMENT_DESCRIPTOR = settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"]
ECHO_DESCRIPTOR = echo_pb2.DESCRIPTOR.services_by_name["EchoService"]
SETTLEMENT_SERVICE = SETTLEMENT_DESCRIPTOR.full_name
ECHO_SERVICE = ECHO_DESCRIPTOR.full_name

log = get_logger("medsettle.server")


class ListenError(OSError):
    """An address the server was told to listen on (--listen, --metrics-listen) cannot be bound."""
WRITER_WATCH_S = 1.0  # how often health looks at the writer process


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_message_bytes: int = 1 << 20  # 1 MiB: a 500-line bill is about 40 KiB
    max_concurrent_rpcs: int = 2_048  # beyond this gRPC answers RESOURCE_EXHAUSTED
    shutdown_grace_s: float = 10.0
    http_body_timeout_s: float = 30.0  # the JSON gateway: a request body must arrive within this
    http_idle_timeout_s: float = 75.0  # the JSON gateway: a connection with no whole request for this long is closed


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service: SettlementService
    watcher: asyncio.Task[None]
    stats: CallStats
    metrics: MetricsEndpoint | None = None  # the /metrics endpoint, if asked for
    gateway: RunningGateway | None = None  # the national-interface HTTP gateway, if asked for

    async def stop(self, grace_s: float | None = None) -> None:
        """Stops taking calls (gRPC and HTTP), drains in-flight ones, then the writer; /metrics last."""
        self.watcher.cancel()
        try:
            await self.health.enter_graceful_shutdown()
            stopping = [self.server.stop(grace_s)] + ([self.gateway.stop()] if self.gateway is not None else [])
            await asyncio.gather(*stopping)
            await self.service.drain()
            await asyncio.get_running_loop().run_in_executor(None, self.service.close)
        finally:
            if self.metrics is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.metrics.stop)


async def create_server(
    address: str,
    service: SettlementService,
    limits: ServerLimits = ServerLimits(),
    with_echo: bool = False,
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (),
    credentials: CredentialCache | None = None,
    tls: TlsFiles | None = None,
    metrics_address: str | None = None,
    http_address: str | None = None,
) -> RunningServer:
    """A started server bound to address ("host:0" picks a free port).

    With credentials, every SettlementService call must authenticate (bearer
    token, or the client certificate under tls); without, none is checked.
    With metrics_address, Prometheus metrics are served there at /metrics
    (they are counted either way: server/metrics.py). With http_address, the
    national-interface gateway is served there too, on this event loop,
    through the same service, credentials, TLS files and bounds."""
    stats = CallStats(method_names(SETTLEMENT_DESCRIPTOR, ECHO_DESCRIPTOR) + list(GATEWAY_METHODS))
    gate = None
    if credentials is not None:
        await credentials.reload()
        gate = Gate(credentials, mtls=tls is not None)
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
        interceptors=interceptors,
    )
    authorizer = Authorizer(required=credentials is not None)
    _add_settlement_service(measured(SettlementServicer(service, stats, authorizer), SETTLEMENT_DESCRIPTOR, stats, gate),
                            server, gated=gate is not None)
    names = [SETTLEMENT_SERVICE, reflection.SERVICE_NAME, health.SERVICE_NAME]
    if with_echo:
        from medsettle.server.echo import EchoServicer

        # Measured as the settlements are: the benchmark's baseline pays what they pay.
        echo_pb2_grpc.add_EchoServiceServicer_to_server(
            measured(EchoServicer(_canned_result()), ECHO_DESCRIPTOR, stats), server)
        names.append(ECHO_SERVICE)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(names, server)
    try:
        port = server.add_secure_port(address, server_credentials(tls)) if tls else server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind": in use, no such address, no permission
        port = 0
    if port == 0:
        raise ListenError(f"--listen: cannot listen on {address}"
                          + (" (in use, or the --tls-* certificate or key is not valid)" if tls else ""))
    try:
        metrics = start_metrics(metrics_address, stats, service) if metrics_address else None
    except OSError as error:
        raise ListenError(f"--metrics-listen: cannot listen on {metrics_address}: {error.strerror or error}") from None
    gateway = None
    try:
        service.start()
        await server.start()
        if http_address is not None:
            gateway = await _start_gateway(http_address, service, stats, credentials, tls, limits)
    except BaseException:
        if metrics is not None:
            metrics.stop()
        await server.stop(None)  # the gateway could not listen: the gRPC port closes too (the caller closes the service)
        raise
    # SERVING only now: reference data is loaded and the writer runs.
    await _set_health(health_servicer, serving=True)
    watcher = asyncio.get_running_loop().create_task(_watch_writer(service, health_servicer))
    return RunningServer(server, port, health_servicer, service, watcher, stats, metrics, gateway)


async def _start_gateway(address: str, service: SettlementService, stats: CallStats,
                         credentials: CredentialCache | None, tls: TlsFiles | None, limits: ServerLimits) -> RunningGateway:
    try:
        return await start_gateway(
            address, service, stats, credentials, server_ssl_context(tls) if tls else None,
            GatewayLimits(limits.max_message_bytes, limits.max_concurrent_rpcs, limits.shutdown_grace_s,
                          limits.http_body_timeout_s, limits.http_idle_timeout_s))
    except OSError as error:
        raise ListenError(f"--http-listen: cannot listen on {address}: {error.strerror or error}") from None


async def _set_health(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SETTLEMENT_SERVICE):
        await health_servicer.set(name, status)


async def _watch_writer(service: SettlementService, health_servicer: health.aio.HealthServicer) -> None:
    """NOT_SERVING while the writer process cannot be restarted (writes would
    only be refused; meanwhile it tries to start it again), is being
    restarted (writes wait), or the database cannot be reached (PostgreSQL);
    then SERVING again. Logs what the SQLite WAL checkpointer's figures say
    (server/health.py; it never changes health)."""
    serving = True
    loop = asyncio.get_running_loop()
    wal = WalWatch(service.wal_figures)
    while True:
        await asyncio.sleep(WRITER_WATCH_S)
        wal.look()
        if service.writer_down() is not None:
            try:
                await service.retry_writer()
            except Exception as error:  # the watcher must outlive a failed try: health would freeze
                log.error("writer process restart failed", detail=f"{type(error).__name__}: {error}")
        down = service.writer_unavailable() or await loop.run_in_executor(None, service.storage_unreachable)
        if (down is None) != serving:
            serving = down is None
            await _set_health(health_servicer, serving)
            if serving:
                log.info("writes can go through again; serving")
            elif service.writer_unavailable() is None:
                log.error("database unreachable; not serving", detail=down)
            elif service.writer_down() is None:  # being replaced: usually over within a second
                log.warning("writer process being replaced; not serving", detail=down)
            else:
                log.error("writer process down; not serving", detail=down)


def _add_settlement_service(servicer: Any, server: grpc.aio.Server, gated: bool) -> None:
    """As settlement_pb2_grpc.add_SettlementServiceServicer_to_server, but
    the write RPCs (RAW_BYTES_METHODS) take and answer bytes: their
    requests go to the writer as received (server/wire.py). Gated (calls
    authenticated), undecodable requests are refused by the gate after
    authentication (server/auth.py), not by gRPC before it."""
    handlers = {}
    for method in SETTLEMENT_DESCRIPTOR.methods:
        raw = method.name in RAW_BYTES_METHODS
        request_type = getattr(settlement_pb2, method.input_type.name)
        response_type = getattr(settlement_pb2, method.output_type.name)
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=None if raw else tolerant(request_type.FromString) if gated else request_type.FromString,
            response_serializer=None if raw or method.name in RAW_ANSWER_METHODS else response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SETTLEMENT_SERVICE, handlers),))
    server.add_registered_method_handlers(SETTLEMENT_SERVICE, handlers)


def _canned_result() -> settlement_pb2.SettleResult:
    """A result as large as a typical three-line settlement."""
    return settlement_pb2.SettleResult(
        setl_id="S000000000001", msgid="H4401010000120261125000000001", fixmedins_code="H44010100001",
        psn_no="44010000000000000001", insutype=310, insuplc_admdvs="440100", mdtrtarea_admvs="440100",
        clr_type=11, pay_loc=2, kind=1, setlym="2026-11", medfee_sumamt_fen=12345, inscp_scp_amt_fen=12000,
        hifp_pay_fen=9000, fund_pay_sumamt_fen=9000, psn_part_amt_fen=3345, acct_pay_fen=3345, balc_fen=100000,
        line_splits=[
            settlement_pb2.LineSplit(feedetl_sn=str(i), chrgitm_lv=1, det_item_fee_sumamt_fen=4115, inscp_scp_amt_fen=4000)
            for i in range(3)
        ],
    )


def bound_address(address: str, port: int) -> str:
    """The address asked for with the port bound ("127.0.0.1:0" -> "127.0.0.1:43117")."""
    host, colon, _ = address.rpartition(":")
    return f"{host}:{port}" if colon else address


async def serve(
    address: str,
    service: SettlementService,
    limits: ServerLimits = ServerLimits(),
    on_ready: Callable[[RunningServer], Awaitable[bool]] | None = None,
    with_echo: bool = False,
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (),
    credentials: CredentialCache | None = None,
    tls: TlsFiles | None = None,
    metrics_address: str | None = None,
    http_address: str | None = None,
) -> None:
    """Runs until SIGTERM/SIGINT (or until on_ready returns False), then drains."""
    running = await create_server(address, service, limits, with_echo, interceptors, credentials, tls, metrics_address,
                                  http_address)
    settle_collector()  # server/collector.py: no full collection walks what the start built
    log.info("serving", address=bound_address(address, running.port), port=running.port,
             metrics_port=running.metrics.port if running.metrics is not None else None,
             metrics_url=running.metrics.url if running.metrics is not None else None,
             http_port=running.gateway.port if running.gateway is not None else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if on_ready is not None and not await on_ready(running):
            stop.set()
        await stop.wait()
        log.info("draining", grace_s=limits.shutdown_grace_s)
    finally:  # also when on_ready raised: in-flight calls drain, the writer finishes
        await running.stop(limits.shutdown_grace_s)
        log.info("stopped")

"""The gateway over HTTP (aiohttp.web), on the gRPC server's own event loop:
`POST /fsi/api/rsfComIfsService/callService` with the national envelope.

Each call goes through the same service layer, writer, credentials and
bounds as a gRPC call: authenticated (bearer token, or the client
certificate under mutual TLS) before anything else, authorized for the
envelope's fixmedins_code before its input is read, refused with the same
reasons and field names. Never a 500 with a traceback: an unexpected error
is logged and answered as the INTERNAL refusal gRPC would give.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import grpc
from aiohttp import web

from medsettle.ledger.errors import FieldViolation, Reason, Refused, invalid
from medsettle.ledger.service import SettlementService
from medsettle.ledger.settlement.model import Bill
from medsettle.ledger.settlement.validation import bill_violations
from medsettle.server import convert, wire
from medsettle.server.auth import (
    CURRENT_PRINCIPAL,
    AmbiguousCertificate,
    Authorizer,
    CallerRefused,
    CredentialCache,
    NOT_YOUR_INSTITUTION,
    UNAUTHENTICATED_REASON,
    credential_state,
    bearer_token,
    identify_caller,
    principal_of_pem,
)
from medsettle.server.gateway import envelope as env
from medsettle.server.gateway.openapi import ENDPOINT, docs_page, openapi_document
from medsettle.server.gateway.yuan import dumps, loads
from medsettle.server.logs import get_logger
from medsettle.server.metrics import OK, CallStats
from medsettle.server.servicer import log_refusal
from medsettle.server.status import MAX_MESSAGE_CHARS, MAX_VIOLATIONS_SHOWN, STATUS_OF_REASON
from medsettle.v1 import settlement_pb2 as pb

OPENAPI_PATH = "/fsi/api/openapi.json"
DOCS_PATH = "/fsi/api/docs"
# Per call counted in CallStats like an RPC: "http" for bodies with no known infno.
GATEWAY_METHODS = ("http", *(f"http_{infno}" for infno in env.INTERFACES))

# gRPC status -> HTTP status, as google/rpc/code.proto maps them.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}
TOO_LARGE = 413
BODY_TIMEOUT = 408

log = get_logger("medsettle.server.gateway")


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    max_body_bytes: int = 1 << 20  # the gRPC server's message bound
    max_concurrent: int = 2_048  # calls in progress; beyond, 429 at once
    shutdown_grace_s: float = 10.0
    body_timeout_s: float = 30.0  # a body still arriving after this is refused (408): a slow sender frees its place
    # A connection that has not sent a whole request this long after it opened (or after its last
    # answer) is closed: idle or trickling header bytes, it would hold a file descriptor (aiohttp: an hour).
    idle_timeout_s: float = 75.0


class _Answer(Exception):
    """An early answer: an HTTP status and the envelope to send."""

    def __init__(self, status: int, body: dict[str, Any], method: str, code: str) -> None:
        super().__init__(code)
        self.status, self.body, self.method, self.code = status, body, method, code


class Gateway:
    def __init__(self, service: SettlementService, stats: CallStats | None, credentials: CredentialCache | None,
                 mtls: bool, limits: GatewayLimits) -> None:
        self._service = service
        self._stats = stats
        self._credentials = credentials
        self._mtls = mtls
        self._limits = limits
        self._authorizer = Authorizer(required=credentials is not None)
        self._in_flight = 0
        self._interfaces: dict[str, Callable[[env.Envelope], Awaitable[dict[str, Any]]]] = {
            env.PRE_SETTLE: self._pre_settle,
            env.SETTLE: self._settle,
            env.REVERSE: self._reverse,
            env.LOOKUP: self._lookup,
            env.RECONCILE_TOTALS: self._reconcile_totals,
            env.RECONCILE_DETAILS: self._reconcile_details,
        }

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._limits.max_body_bytes)
        app.router.add_post(ENDPOINT, self.call_service)
        document = openapi_document()
        page = docs_page(document, OPENAPI_PATH)

        async def description(_: web.Request) -> web.Response:
            return _json_response(200, document)

        async def docs(_: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        app.router.add_get(OPENAPI_PATH, description)
        app.router.add_get(DOCS_PATH, docs)
        return app

    async def call_service(self, request: web.Request) -> web.Response:
        if self._in_flight >= self._limits.max_concurrent:
            return self._error(429, "", Reason.OVERLOADED.value,
                               f"more than {self._limits.max_concurrent} calls in progress; retry with the same msgid")
        self._in_flight += 1
        started = time.perf_counter()
        method, code, status = "http", OK, 200
        token = None
        try:
            envelope, token = await self._envelope(request)
            method = f"http_{envelope.infno}"
            try:
                output = await self._interfaces[envelope.infno](envelope)
            except Refused as refusal:
                log_refusal(method, refusal, envelope.fixmedins_code)
                status = HTTP_STATUS[STATUS_OF_REASON[refusal.reason]]
                code = STATUS_OF_REASON[refusal.reason].name
                self._outcome(method, refusal.reason.value)
                return self._refused(status, envelope.msgid, refusal)
            self._outcome(method, OK)
            return _json_response(200, env.answer(envelope.msgid, output, self._service.clock.now()))
        except _Answer as early:
            method, code, status = early.method, early.code, early.status
            return _json_response(early.status, early.body)
        except Exception as error:  # a bug: logged for the operator, answered as gRPC answers INTERNAL
            log.error("gateway call failed", method=method, error=f"{type(error).__name__}: {str(error)[:200]}")
            code, status = "INTERNAL", 500
            return self._error(500, "", Reason.INTERNAL.value, "internal error; retry with the same msgid")
        finally:
            self._in_flight -= 1
            if token is not None:
                CURRENT_PRINCIPAL.reset(token)
            # The access log: what was called and how it ended, never the body (at debug level only).
            log.debug("http call", method=method, status=status, code=code,
                      ms=round(1000 * (time.perf_counter() - started), 3))
            if self._stats is not None:
                self._stats.started(method)
                self._stats.call(method, code, time.perf_counter() - started)

    def _outcome(self, method: str, result: str) -> None:
        if self._stats is not None:
            self._stats.outcome(method, result)

    async def _envelope(self, request: web.Request) -> tuple[env.Envelope, Any]:
        """The authenticated, authorized call's envelope (and the principal's
        context token, to reset), or _Answer refusing it. Authenticated from
        the headers before the body is read: a caller with no credential
        never holds a place among the calls in progress while its body
        arrives (or never does)."""
        principal_token = await self._authenticate(request)
        try:
            return self._authorized(await self._body(request)), principal_token
        except BaseException:
            if principal_token is not None:
                CURRENT_PRINCIPAL.reset(principal_token)
            raise

    def _authorized(self, body: bytes) -> env.Envelope:
        """The envelope of the body if the caller may call it for its fixmedins_code; else _Answer (400 or 403)."""
        try:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as error:
                raise invalid([FieldViolation("request", f"must be UTF-8 (bad byte at {error.start})")]) from None
            try:
                parsed = loads(text)
            except (ValueError, RecursionError) as error:
                raise invalid([FieldViolation("request", f"must be JSON: {str(error)[:120]}")]) from None
            envelope = env.parse_envelope(parsed)
        except Refused as refusal:
            log_refusal("http", refusal, "")
            raise _Answer(400, self._refusal_body("", refusal), "http", "INVALID_ARGUMENT") from None
        denied = self._authorizer.denial(envelope.fixmedins_code, write=envelope.infno in env.WRITES)
        if denied is not None:
            principal = CURRENT_PRINCIPAL.get()
            log.warning("permission denied", method=f"http_{envelope.infno}", fixmedins_code=envelope.fixmedins_code[:30],
                        caller=principal.fixmedins_code if principal else "", via=principal.via if principal else "")
            self._outcome(f"http_{envelope.infno}", NOT_YOUR_INSTITUTION)
            raise _Answer(403, self._body_of(envelope.msgid, NOT_YOUR_INSTITUTION, denied),
                          f"http_{envelope.infno}", "PERMISSION_DENIED")
        return envelope

    async def _body(self, request: web.Request) -> bytes:
        limit = self._limits.max_body_bytes
        if request.content_length is None or request.content_length <= limit:
            try:
                async with asyncio.timeout(self._limits.body_timeout_s):
                    return await request.read()
            except web.HTTPRequestEntityTooLarge:
                pass  # a chunked body beyond the bound
            except TimeoutError:
                raise _Answer(BODY_TIMEOUT, self._refusal_body("", invalid([FieldViolation(
                    "request", f"the body must arrive within {self._limits.body_timeout_s:g} s")])),
                    "http", "INVALID_ARGUMENT") from None
        raise _Answer(TOO_LARGE, self._refusal_body("", invalid([FieldViolation(
            "request", f"the body must be at most {limit} bytes")])), "http", "INVALID_ARGUMENT")

    async def _authenticate(self, request: web.Request) -> Any:
        """Sets the caller for this call (reset when it ends); _Answer 401/403 if there is none."""
        if self._credentials is None:
            return None
        token = bearer_token([("authorization", request.headers.get("Authorization", ""))])
        try:
            certified = _peer_principal(request) if self._mtls else None
            principal = await identify_caller(self._credentials, token, certified)
        except AmbiguousCertificate as error:
            log.warning("client certificate names more than one caller", method="http")
            raise _Answer(401, self._body_of("", UNAUTHENTICATED_REASON, f"{error}; it must name one"),
                          "http", "UNAUTHENTICATED") from None
        except CallerRefused as refused:
            log.warning("unauthenticated" if refused.code is grpc.StatusCode.UNAUTHENTICATED
                        else "token and client certificate disagree", method="http",
                        credential=credential_state(token, refused))
            raise _Answer(HTTP_STATUS[refused.code], self._body_of("", refused.reason, refused.message),
                          "http", refused.code.name) from None
        return CURRENT_PRINCIPAL.set(principal)

    def _body_of(self, msgid: str, reason: str, message: str, violations: list[FieldViolation] | None = None) -> dict[str, Any]:
        return env.refusal_answer(msgid, reason, message, violations or [], self._service.clock.now(),
                                  MAX_VIOLATIONS_SHOWN, MAX_MESSAGE_CHARS)

    def _refusal_body(self, msgid: str, refusal: Refused) -> dict[str, Any]:
        return self._body_of(msgid, refusal.reason.value, refusal.message, refusal.violations)

    def _refused(self, status: int, msgid: str, refusal: Refused) -> web.Response:
        return _json_response(status, self._refusal_body(msgid, refusal))

    def _error(self, status: int, msgid: str, reason: str, message: str) -> web.Response:
        return _json_response(status, self._body_of(msgid, reason, message))

    # ---- the interfaces ------------------------------------------------------
    # The writes go to the writer as the gRPC requests they stand for (server/wire.py): one write path.
    async def _pre_settle(self, envelope: env.Envelope) -> dict[str, Any]:
        request = pb.PreSettleRequest(request=_settle_request(env.bill_of(envelope)))
        return await self._write(wire.PRE_SETTLE, request.SerializeToString())

    async def _settle(self, envelope: env.Envelope) -> dict[str, Any]:
        return await self._write(wire.SETTLE, _settle_request(env.bill_of(envelope)).SerializeToString())

    async def _reverse(self, envelope: env.Envelope) -> dict[str, Any]:
        request = pb.ReverseRequest(msgid=envelope.msgid, fixmedins_code=envelope.fixmedins_code,
                                    setl_id=env.reversal_of(envelope))
        return await self._write(wire.REVERSE, request.SerializeToString())

    async def _write(self, kind: int, request: bytes) -> dict[str, Any]:
        result = pb.SettleResult.FromString(await self._service.write(kind, request))
        return env.settlement_output(convert.settlement_from_pb(result))

    async def _lookup(self, envelope: env.Envelope) -> dict[str, Any]:
        setl_id, msgid = env.lookup_of(envelope)
        return env.settlement_output(await self._service.get(envelope.fixmedins_code, setl_id, msgid))

    async def _reconcile_totals(self, envelope: env.Envelope) -> dict[str, Any]:
        setlym, clr_type, institution = env.totals_query_of(envelope)
        platform, result = await self._service.reconcile_totals(envelope.fixmedins_code, setlym, clr_type, institution)
        return env.totals_output(setlym, clr_type, platform, result)

    async def _reconcile_details(self, envelope: env.Envelope) -> dict[str, Any]:
        setlym, clr_type, page_num, page_size = env.details_query_of(envelope)
        skip = (page_num - 1) * page_size
        page = []
        listing = self._service.list_settlements(envelope.fixmedins_code, setlym, clr_type, skip + page_size + 1)
        async with contextlib.aclosing(listing):  # type: ignore[type-var]
            index = 0
            async for settlement in listing:
                if index >= skip:
                    page.append(settlement)
                index += 1
        return env.details_output(page[:page_size], page_num, page_size, more=len(page) > page_size)


def _settle_request(bill: Bill) -> pb.SettleRequest:
    """The SettleRequest of a bill read from an envelope. A number the
    message cannot hold (an insutype beyond 32 bits) is refused as the
    service refuses it, naming the field."""
    try:
        return convert.bill_pb(bill)
    except ValueError:
        raise invalid(bill_violations(bill, person_from_token=bool(bill.ecert_token))
                      or [FieldViolation("input.data", "a number is out of range")]) from None


def _peer_principal(request: web.Request) -> Any:
    """The caller the verified client certificate names (TLS checked it against the CA)."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return principal_of_pem(ssl.DER_cert_to_PEM_cert(der).encode("ascii")) if der else None


def _json_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=dumps(body), content_type="application/json", charset="utf-8")


@dataclass
class RunningGateway:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        """Stops listening, lets calls in progress finish (up to the grace), then closes."""
        await self.runner.cleanup()


async def start_gateway(address: str, service: SettlementService, stats: CallStats | None,
                        credentials: CredentialCache | None, ssl_context: ssl.SSLContext | None,
                        limits: GatewayLimits = GatewayLimits()) -> RunningGateway:
    """The gateway listening on address (HOST:PORT, port 0: any free port), on the running event loop."""
    from medsettle.server.metrics import split_host_port

    host, port = split_host_port(address)
    gateway = Gateway(service, stats, credentials, mtls=ssl_context is not None, limits=limits)
    runner = web.AppRunner(gateway.application(), access_log=None, handle_signals=False,
                           shutdown_timeout=limits.shutdown_grace_s, keepalive_timeout=limits.idle_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=False)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return RunningGateway(runner, bound)

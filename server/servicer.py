"""SettlementService over gRPC (grpc.aio): convert, call the service layer,
map refusals to rich statuses. No business rules here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from medsettle.ledger.errors import Reason, Refused, refused_field
from medsettle.ledger.service import SettlementService
from medsettle.ledger.storage.phase_trace import tracer
from medsettle.server import convert, wire
from medsettle.server.auth import NOT_YOUR_INSTITUTION, Authorizer
from medsettle.server.logs import get_logger, mask
from medsettle.server.metrics import OK, CallStats
from medsettle.server.status import OK_ITEM, item_status, rich_status, undecodable
from medsettle.v1 import settlement_pb2 as pb
from medsettle.v1 import settlement_pb2_grpc as pb_grpc

STREAM_WINDOW = 512  # stream requests submitted but not yet answered
MAX_BATCH_BILLS = 256  # bills in one SettleBatchStream message
BATCH_WINDOW = 8  # SettleBatchStream messages submitted but not yet answered
# A batch's answers go out in messages of about this size at most, well under
# the 4 MiB a gRPC client accepts by default (a 500-line result is ~20 KiB).
RESPONSE_SPLIT_BYTES = 512 * 1024

log = get_logger("medsettle.server")

# Methods whose handlers take and answer bytes (server/wire.py).
RAW_BYTES_METHODS = frozenset({"Settle", "PreSettle", "Reverse"})
# Methods whose handlers answer bytes they serialized themselves (a settled
# item's result goes out as the writer's bytes, not parsed and serialized again).
RAW_ANSWER_METHODS = frozenset({"SettleStream"})
# A SettleStreamResponse's status field (3) holding OK_ITEM, as serialized.
_OK_STATUS_FIELD = pb.SettleStreamResponse(status=OK_ITEM).SerializeToString()

# A stream item: its pending answer (server/wire.py), or why it was refused before the writer.
_Outcome = asyncio.Future[bytes] | Refused | pb.ItemStatus


# The service cannot work: the operator must see why at once (disk full,
# database locked, ...); the caller was told to retry with the same msgid.
_OPERATOR_ALERTS = frozenset({Reason.STORAGE_UNAVAILABLE, Reason.INTERNAL})


def log_refusal(method: str, refusal: Refused, code: str, stream_item: bool = False) -> None:
    if refusal.reason in _OPERATOR_ALERTS:
        # The detail says whether anything may have been written (a writer process lost mid-batch).
        log.error("write failed", method=method, reason=refusal.reason.value, detail=refusal.message)
    elif not stream_item:  # a stream's items are answered to it and counted (medsettle_outcomes), not logged one by one
        log.info("refused", method=method, fixmedins_code=code[:30], reason=refusal.reason.value,
                 fields=[v.field for v in refusal.violations][:20])


class SettlementServicer(pb_grpc.SettlementServiceServicer):
    """The write RPCs (Settle, PreSettle, Reverse) take and answer raw bytes
    (RAW_BYTES_METHODS): the request goes to the writer as received, its
    answer comes back as the response's bytes (server/wire.py). Here only
    fixmedins_code is read from the request (upb, about a microsecond), to
    authorize the caller before anything is validated."""

    def __init__(self, service: SettlementService, stats: CallStats,
                 authorizer: Authorizer = Authorizer(required=False)) -> None:
        self._service = service
        self._stats = stats
        self._auth = authorizer
        # Off by default (ledger/storage/phase_trace.py): per write call, when
        # the handler began, had its answer back from the writer, and returned.
        self._trace = tracer("calls", ("entered", "resumed", "returned"))

    async def _authorize(self, context: grpc.aio.ServicerContext, method: str, fixmedins_code: str, write: bool) -> None:
        """Aborts with PERMISSION_DENIED unless the caller may act for fixmedins_code (server/auth.py)."""
        try:
            await self._auth.require(context, method, fixmedins_code, write)
        except grpc.aio.AbortError:
            self._stats.outcome(method, NOT_YOUR_INSTITUTION)
            raise

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str, refusal: Refused, code: str) -> None:
        log_refusal(method, refusal, code)
        self._stats.outcome(method, refusal.reason.value)
        await context.abort_with_status(rich_status(refusal))

    async def _write(self, context: grpc.aio.ServicerContext, method: str, kind: int, request: bytes,
                     fixmedins_code_of: Any) -> bytes:
        """The answer's bytes of one write RPC, or an abort with its refusal's status."""
        trace = self._trace
        if trace is not None:
            entered = trace.clock()
        try:
            code = fixmedins_code_of(request)
        except DecodeError as error:  # refused as the interceptor refuses undecodable requests of other RPCs
            await context.abort_with_status(rich_status(undecodable(error)))
        if self._auth.denial(code, write=True) is not None:
            await self._authorize(context, method, code, write=True)
        try:
            result = await self._service.write(kind, request)
        except Refused as refusal:
            await self._refuse(context, method, refusal, code)
            raise
        if trace is not None:
            resumed = trace.clock()
        self._stats.outcome(method, OK)
        if kind == wire.REVERSE:
            reversal = pb.SettleResult.FromString(result)
            log.info("reversed", setl_id=reversal.setl_id, orig_setl_id=reversal.orig_setl_id,
                     fixmedins_code=reversal.fixmedins_code)
        elif kind == wire.SETTLE and log.is_enabled_for(logging.DEBUG):
            self._log_settled(method, pb.SettleResult.FromString(result))
        if trace is not None:
            answer = wire.response_bytes(result)
            trace.add(entered, resumed, trace.clock())
            return answer
        return wire.response_bytes(result)

    @staticmethod
    def _log_settled(method: str, s: pb.SettleResult) -> None:
        log.debug("settled", method=method, setl_id=s.setl_id, fixmedins_code=s.fixmedins_code,
                  psn_no=mask(s.psn_no), medfee_sumamt_fen=s.medfee_sumamt_fen,
                  fund_pay_sumamt_fen=s.fund_pay_sumamt_fen)

    async def PreSettle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[override]
        return await self._write(context, "PreSettle", wire.PRE_SETTLE, request, _pre_settle_code)

    async def Settle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[override]
        return await self._write(context, "Settle", wire.SETTLE, request, _settle_code)

    async def Reverse(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[override]
        return await self._write(context, "Reverse", wire.REVERSE, request, _reverse_code)

    def _submit_item(self, request: pb.SettleRequest) -> tuple[str, _Outcome]:
        """Queues one stream item: (msgid, its pending answer or why not)."""
        denied = self._auth.item_denial(request.fixmedins_code)
        if denied is not None:
            return request.msgid, denied
        try:
            return request.msgid, self._service.submit_write(wire.SETTLE, request.SerializeToString())
        except Refused as refusal:
            return request.msgid, refusal

    async def _item_result(self, method: str, outcome: _Outcome) -> bytes | pb.ItemStatus:
        """One stream item's SettleResult bytes once its batch is committed, or why it was refused."""
        if not isinstance(outcome, (pb.ItemStatus, Refused)):
            try:
                result = wire.result_of(await outcome)
            except Refused as refusal:
                log_refusal(method, refusal, "", stream_item=True)
                outcome = refusal
            else:
                self._stats.outcome(method, OK)
                if log.is_enabled_for(logging.DEBUG):
                    self._log_settled(method, pb.SettleResult.FromString(result))
                return result
        status = outcome if isinstance(outcome, pb.ItemStatus) else item_status(outcome)
        self._stats.outcome(method, status.reason)
        return status

    async def _answer_item(self, method: str, seq: int, msgid: str, outcome: _Outcome) -> pb.SettleStreamResponse:
        """The stream answer of one item, once its batch is committed."""
        result = await self._item_result(method, outcome)
        if isinstance(result, pb.ItemStatus):
            return pb.SettleStreamResponse(seq=seq, msgid=msgid, status=result)
        answer = pb.SettleStreamResponse(seq=seq, msgid=msgid, status=OK_ITEM)
        answer.result.MergeFromString(result)
        return answer

    async def _answer_item_bytes(self, method: str, seq: int, msgid: str, outcome: _Outcome) -> bytes:
        """_answer_item's answer serialized, a settled item's result as the writer's bytes."""
        result = await self._item_result(method, outcome)
        if isinstance(result, pb.ItemStatus):
            return pb.SettleStreamResponse(seq=seq, msgid=msgid, status=result).SerializeToString()
        return settled_item_bytes(seq, msgid, result)

    async def SettleStream(
        self, request_iterator: AsyncIterator[pb.SettleStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:  # SettleStreamResponse bytes (RAW_ANSWER_METHODS)
        pending: asyncio.Queue[tuple[int, str, _Outcome] | None] = asyncio.Queue(STREAM_WINDOW)

        async def submit_all() -> None:
            seq = 0
            try:
                async for item in request_iterator:
                    await pending.put((seq, *self._submit_item(item.request)))
                    seq += 1
            finally:
                await pending.put(None)

        reader = asyncio.create_task(submit_all())
        try:
            while (entry := await pending.get()) is not None:
                yield await self._answer_item_bytes("SettleStream", *entry)
            await reader
        finally:
            reader.cancel()

    async def SettleBatchStream(
        self, request_iterator: AsyncIterator[pb.SettleBatchStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SettleBatchStreamResponse]:
        # A batch whose size is out of bounds ends the stream: the client broke the protocol.
        pending: asyncio.Queue[list[tuple[int, str, _Outcome]] | Refused | None] = asyncio.Queue(BATCH_WINDOW)

        async def submit_all() -> None:
            seq = 0
            try:
                async for batch in request_iterator:
                    if not 1 <= len(batch.requests) <= MAX_BATCH_BILLS:
                        await pending.put(refused_field(
                            Reason.FIELD_INVALID, "requests",
                            f"a batch holds 1..{MAX_BATCH_BILLS} bills, got {len(batch.requests)}"))
                        return
                    items = []
                    for request in batch.requests:
                        items.append((seq, *self._submit_item(request)))
                        seq += 1
                    await pending.put(items)
            finally:
                await pending.put(None)

        reader = asyncio.create_task(submit_all())
        try:
            while (entry := await pending.get()) is not None:
                if isinstance(entry, Refused):
                    await self._refuse(context, "SettleBatchStream", entry, "")
                    return
                answers: list[pb.SettleStreamResponse] = []
                size_bytes = 0
                for item in entry:
                    answer = await self._answer_item("SettleBatchStream", *item)
                    size_bytes += answer.ByteSize()
                    answers.append(answer)
                    if size_bytes >= RESPONSE_SPLIT_BYTES:
                        yield pb.SettleBatchStreamResponse(items=answers)
                        answers, size_bytes = [], 0
                if answers:
                    yield pb.SettleBatchStreamResponse(items=answers)
            await reader
        finally:
            reader.cancel()

    async def GetSettlement(self, request: pb.GetSettlementRequest, context: grpc.aio.ServicerContext) -> pb.GetSettlementResponse:
        await self._authorize(context, "GetSettlement", request.fixmedins_code, write=False)
        try:
            settlement = await self._service.get(request.fixmedins_code, request.setl_id, request.msgid)
        except Refused as refusal:
            await self._refuse(context, "GetSettlement", refusal, request.fixmedins_code)
            raise
        self._stats.outcome("GetSettlement", OK)
        return pb.GetSettlementResponse(result=convert.result_pb(settlement))

    async def ListSettlements(
        self, request: pb.ListSettlementsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ListSettlementsResponse]:
        await self._authorize(context, "ListSettlements", request.fixmedins_code, write=False)
        try:
            async for settlement in self._service.list_settlements(
                request.fixmedins_code, request.setlym, request.clr_type, request.limit
            ):
                yield pb.ListSettlementsResponse(result=convert.result_pb(settlement))
        except Refused as refusal:
            await self._refuse(context, "ListSettlements", refusal, request.fixmedins_code)
        self._stats.outcome("ListSettlements", OK)

    async def ListAuditFlags(
        self, request: pb.ListAuditFlagsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ListAuditFlagsResponse]:
        await self._authorize(context, "ListAuditFlags", request.fixmedins_code, write=False)
        try:
            async for flag in self._service.list_audit_flags(request.fixmedins_code, request.flag_day, request.limit):
                yield pb.ListAuditFlagsResponse(flag=pb.AuditFlag(
                    setl_id=flag["setl_id"], rule=flag["rule"], field=flag["field"], detail=flag["detail"],
                    fixmedins_code=flag["fixmedins_code"], flag_day=flag["flag_day"],
                ))
        except Refused as refusal:
            await self._refuse(context, "ListAuditFlags", refusal, request.fixmedins_code)
        self._stats.outcome("ListAuditFlags", OK)

    async def ReconcileTotals(
        self, request: pb.ReconcileTotalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReconcileTotalsResponse:
        await self._authorize(context, "ReconcileTotals", request.fixmedins_code, write=False)
        try:
            platform, result = await self._service.reconcile_totals(
                request.fixmedins_code, request.setlym, request.clr_type,
                convert.totals_from_pb(request.institution_totals),
            )
        except Refused as refusal:
            await self._refuse(context, "ReconcileTotals", refusal, request.fixmedins_code)
            raise
        self._stats.outcome("ReconcileTotals", OK)
        return pb.ReconcileTotalsResponse(
            platform_totals=convert.totals_pb(platform),
            result=int(result) + 1,  # type: ignore[arg-type]  # enum is stmt_rslt + 1
            stmt_rslt=int(result),
        )


def settled_item_bytes(seq: int, msgid: str, result: bytes) -> bytes:
    """The bytes of SettleStreamResponse(seq, msgid, status=OK_ITEM, result)
    around a SettleResult's bytes: its fields in number order, each as the
    message would serialize it (seq 0 and an empty msgid left out)."""
    msgid_bytes = msgid.encode()
    return b"".join((
        b"\x08" + wire._varint(seq) if seq else b"",
        b"\x12" + wire._varint(len(msgid_bytes)) + msgid_bytes if msgid_bytes else b"",
        _OK_STATUS_FIELD,
        b"\x22" + wire._varint(len(result)), result,
    ))


def _settle_code(request: bytes) -> str:
    return pb.SettleRequest.FromString(request).fixmedins_code


def _pre_settle_code(request: bytes) -> str:
    return pb.PreSettleRequest.FromString(request).request.fixmedins_code


def _reverse_code(request: bytes) -> str:
    return pb.ReverseRequest.FromString(request).fixmedins_code

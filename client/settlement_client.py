"""A typed, blocking client with deadlines and safe retries.

Retries reuse the msgid, so a retry after a timeout can never settle twice:
the service answers a repeated (institution, msgid) with the first result.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from medsettle.v1 import settlement_pb2 as pb
from medsettle.v1 import settlement_pb2_grpc as pb_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})
_sequence = itertools.count(1)
MAX_BATCH_BILLS = 256  # bills per SettleBatchStream message, as the API states


def make_msgid(fixmedins_code: str, at: dt.datetime | None = None) -> str:
    """institution code + yyyymmddHHMMSS + sequence, 30 characters at most."""
    stamp = (at or dt.datetime.now()).strftime("%Y%m%d%H%M%S")
    head = f"{fixmedins_code}{stamp}"[:26]
    return f"{head}{next(_sequence) % 10**(30 - len(head)):0{30 - len(head)}d}"


@dataclass
class CallRefused(Exception):
    """The service refused a call; carries the rich details."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    field_violations: list[tuple[str, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @classmethod
    def from_error(cls, error: grpc.RpcError) -> CallRefused:
        refused = cls(error.code(), error.details() or "")  # type: ignore[attr-defined]
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                refused.field_violations = [(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                refused.reason = info.reason
                refused.metadata = dict(info.metadata)
        return refused


class SettlementClient:
    def __init__(
        self,
        target: str,
        token: str | None = None,
        deadline_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        channel_credentials: grpc.ChannelCredentials | None = None,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        """token: the credential sent with every call; tokens: one per
        fixmedins_code, for a gateway acting for several institutions (a call
        for a code not in it, or for no code, sends token)."""
        if channel_credentials is not None:
            self._channel = grpc.secure_channel(target, channel_credentials)
        else:
            self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.SettlementServiceStub(self._channel)
        self._token = token
        self._tokens: Mapping[str, str] = tokens if tokens is not None else {}
        self._deadline_s = deadline_s
        self._retries = retries
        self._backoff_s = backoff_s

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SettlementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _metadata(self, fixmedins_code: str) -> tuple[tuple[str, str], ...]:
        token = self._tokens.get(fixmedins_code, self._token) if fixmedins_code else self._token
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _call(self, method: object, request: object, fixmedins_code: str, idempotent: bool = True) -> object:
        metadata = self._metadata(fixmedins_code)
        attempt = 0
        while True:
            try:
                return method(request, timeout=self._deadline_s, metadata=metadata)  # type: ignore[operator]
            except grpc.RpcError as error:
                if idempotent and error.code() in RETRYABLE and attempt < self._retries:  # type: ignore[attr-defined]
                    attempt += 1
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
                    continue
                raise CallRefused.from_error(error) from None

    def pre_settle(self, request: pb.SettleRequest) -> pb.SettleResult:
        return self._call(self._stub.PreSettle, pb.PreSettleRequest(request=request), request.fixmedins_code).result  # type: ignore[attr-defined]

    def settle(self, request: pb.SettleRequest) -> pb.SettleResult:
        """Settles; a retry after a timeout reuses the msgid and cannot pay twice."""
        return self._call(self._stub.Settle, request, request.fixmedins_code).result  # type: ignore[attr-defined]

    def reverse(self, msgid: str, fixmedins_code: str, setl_id: str) -> pb.SettleResult:
        request = pb.ReverseRequest(msgid=msgid, fixmedins_code=fixmedins_code, setl_id=setl_id)
        return self._call(self._stub.Reverse, request, fixmedins_code).result  # type: ignore[attr-defined]

    def get(self, fixmedins_code: str, setl_id: str = "", msgid: str = "") -> pb.SettleResult:
        request = pb.GetSettlementRequest(fixmedins_code=fixmedins_code)
        if setl_id:
            request.setl_id = setl_id
        if msgid:
            request.msgid = msgid
        return self._call(self._stub.GetSettlement, request, fixmedins_code).result  # type: ignore[attr-defined]

    def list_settlements(
        self, fixmedins_code: str, setlym: str, clr_type: int = 0, limit: int = 0
    ) -> Iterator[pb.SettleResult]:
        request = pb.ListSettlementsRequest(
            fixmedins_code=fixmedins_code, setlym=setlym, clr_type=clr_type, limit=limit  # type: ignore[arg-type]
        )
        for item in self._listed(self._stub.ListSettlements, request, fixmedins_code):
            yield item.result

    def list_audit_flags(self, fixmedins_code: str, flag_day: str, limit: int = 0) -> Iterator[pb.AuditFlag]:
        """The fund-supervision flags of a day (an empty code: all, operator credentials)."""
        request = pb.ListAuditFlagsRequest(fixmedins_code=fixmedins_code, flag_day=flag_day, limit=limit)
        for item in self._listed(self._stub.ListAuditFlags, request, fixmedins_code):
            yield item.flag

    def _listed(self, method: Any, request: object, fixmedins_code: str) -> Iterator[Any]:
        """A server-streaming read's messages (30 deadlines for the whole listing)."""
        try:
            yield from method(request, timeout=self._deadline_s * 30, metadata=self._metadata(fixmedins_code))
        except grpc.RpcError as error:
            raise CallRefused.from_error(error) from None

    def reconcile_totals(
        self, fixmedins_code: str, setlym: str, clr_type: int, totals: pb.Totals
    ) -> pb.ReconcileTotalsResponse:
        request = pb.ReconcileTotalsRequest(
            fixmedins_code=fixmedins_code, setlym=setlym, clr_type=clr_type, institution_totals=totals  # type: ignore[arg-type]
        )
        return self._call(self._stub.ReconcileTotals, request, fixmedins_code)  # type: ignore[return-value]

    def settle_stream(self, requests: Iterable[pb.SettleRequest]) -> Iterator[pb.SettleStreamResponse]:
        """One response per request, in order; each carries its own status.
        The stream authenticates as its first request's institution."""
        yield from self._streamed(requests, lambda bills: (pb.SettleStreamRequest(request=r) for r in bills),
                                  self._stub.SettleStream, lambda response: (response,))

    def settle_batches(
        self, requests: Iterable[pb.SettleRequest], batch_size: int = MAX_BATCH_BILLS
    ) -> Iterator[pb.SettleStreamResponse]:
        """settle_stream over SettleBatchStream: the same answers, sent
        batch_size bills per message (cheaper per bill for large feeds)."""
        if not 1 <= batch_size <= MAX_BATCH_BILLS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_BILLS}, got {batch_size}")

        def batches(bills: Iterator[pb.SettleRequest]) -> Iterator[pb.SettleBatchStreamRequest]:
            while chunk := list(itertools.islice(bills, batch_size)):
                yield pb.SettleBatchStreamRequest(requests=chunk)

        yield from self._streamed(requests, batches, self._stub.SettleBatchStream, lambda response: response.items)

    def _streamed(self, requests: Iterable[pb.SettleRequest], wrap: Any, method: Any, items: Any) -> Iterator[pb.SettleStreamResponse]:
        pending = iter(requests)
        first = next(pending, None)
        if first is None:
            return
        stream = method(wrap(itertools.chain([first], pending)), metadata=self._metadata(first.fixmedins_code))
        try:
            for response in stream:
                yield from items(response)
        except grpc.RpcError as error:
            raise CallRefused.from_error(error) from None

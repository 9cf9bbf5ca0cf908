"""Refusals -> gRPC statuses with rich details (google.rpc.BadRequest for
field violations, google.rpc.ErrorInfo with the reason code)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from medsettle.ledger.errors import FieldViolation, Reason, Refused
from medsettle.v1 import settlement_pb2 as pb

ERROR_DOMAIN = "medsettle.v1"
# A status travels in HTTP/2 trailers, which clients cap at 8 KiB by default:
# a 500-line bill with every line wrong must still arrive as INVALID_ARGUMENT.
MAX_VIOLATIONS_SHOWN = 20
MAX_MESSAGE_CHARS = 400

STATUS_OF_REASON: dict[Reason, grpc.StatusCode] = {
    Reason.FIELD_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_INSTITUTION: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_PERSON: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.PERSON_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.VISIT_NOT_ALLOWED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_ITEM: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.IDEMPOTENCY_CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    Reason.NO_POLICY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.SETTLEMENT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.REVERSAL_OF_REVERSAL: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ALREADY_REVERSED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.RULE_REFUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.STORAGE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.INTERNAL: grpc.StatusCode.INTERNAL,
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _bounded_message(refusal: Refused) -> str:
    text = str(refusal)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def rich_status(refusal: Refused) -> grpc.Status:
    code = STATUS_OF_REASON[refusal.reason]
    metadata = dict(refusal.metadata)
    if len(refusal.violations) > MAX_VIOLATIONS_SHOWN:
        metadata["violations_total"] = str(len(refusal.violations))
    details = [_pack(error_details_pb2.ErrorInfo(reason=refusal.reason.value, domain=ERROR_DOMAIN, metadata=metadata))]
    if refusal.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in refusal.violations[:MAX_VIOLATIONS_SHOWN]
                    ]
                )
            )
        )
    status = status_pb2.Status(code=code.value[0], message=_bounded_message(refusal), details=details)
    return rpc_status.to_status(status)


def undecodable(error: Exception) -> Refused:
    """Request bytes that are no message of the RPC's type, refused naming `request`."""
    return Refused(Reason.FIELD_INVALID, "request: undecodable", [FieldViolation(
        "request", f"not a valid message of this RPC's type ({type(error).__name__})")])


def item_status(refusal: Refused) -> pb.ItemStatus:
    """The same refusal as one SettleStream item's status."""
    return pb.ItemStatus(
        code=STATUS_OF_REASON[refusal.reason].value[0],
        message=_bounded_message(refusal),
        reason=refusal.reason.value,
        field_violations=[pb.FieldViolation(field=v.field, description=v.description)
                          for v in refusal.violations[:MAX_VIOLATIONS_SHOWN]],
    )


OK_ITEM = pb.ItemStatus(code=code_pb2.OK)


def aborted_code(context: grpc.aio.ServicerContext) -> str:
    """The status code name a call was aborted with (context.abort*)."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"

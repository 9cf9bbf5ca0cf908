"""The writer's side of the bytes interface (server/wire.py): a batch of
write requests, as the gRPC process received them, in; their answers,
as the gRPC process sends them on, out. Parsing, validation (the
e-insurance certificate's included), the split and the result message all
run here, in the writer process (or on the writer thread with
`--writer-thread`), not on the gRPC event loop."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from google.protobuf.message import DecodeError

from dataclasses import replace

from medsettle.ledger import ecert
from medsettle.ledger.clock import Clock
from medsettle.ledger.errors import FieldViolation, Reason, Refused, invalid
from medsettle.ledger.settlement.model import Bill, Settlement
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand
from medsettle.ledger.settlement.validation import bill_violations, reversal_violations
from medsettle.ledger.storage.writer import BatchProcessor, batch_failure
from medsettle.server import convert, request_bytes, result_bytes, wire
from medsettle.server.status import undecodable
from medsettle.v1 import settlement_pb2 as pb


class WriteRequests:
    """Runs batches of write requests (kind, bytes) through a processor
    (SettlementProcessor.run_batch): one answer's bytes per request, in order."""

    def __init__(self, processor: BatchProcessor, clock: Clock, ecert_key: bytes | None,
                 rollback: Callable[[], None] = lambda: None) -> None:
        self._processor = processor
        self._clock = clock
        self._ecert_key = ecert_key
        self._rollback = rollback  # after a batch raised: nothing of it stays begun
        self._commands: dict[int, Callable[[bytes], Any]] = {
            wire.SETTLE: self._settle,
            wire.PRE_SETTLE: self._pre_settle,
            wire.REVERSE: self._reverse,
        }

    def run_batch(self, writes: Sequence[wire.Write]) -> list[bytes]:
        answers: list[bytes] = [b""] * len(writes)
        commands: list[Any] = []
        places: list[int] = []
        for place, (kind, data) in enumerate(writes):
            try:
                commands.append(self._command(kind, data))
            except Refused as refusal:
                answers[place] = wire.refused(refusal)
            else:
                places.append(place)
        if commands:
            for place, outcome in zip(places, self._outcomes(commands)):
                answers[place] = _answer(outcome)
        return answers

    def run_body(self, body: bytes) -> bytes:
        """A batch body in, its answers body out (server/wire.py)."""
        return wire.answers_body(self.run_batch(wire.writes_of(body)))

    def _outcomes(self, commands: list[Any]) -> list[Any]:
        try:
            outcomes = self._processor.run_batch(commands)
            if len(outcomes) != len(commands):  # not an assert: under -O a caller would never be answered
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(commands)} commands")
        except Exception as error:  # the batch fails, the writer lives
            self._rollback()
            return [batch_failure(error)] * len(commands)
        return outcomes

    def _command(self, kind: int, data: bytes) -> Any:
        command = self._commands.get(kind)
        if command is None:
            raise Refused(Reason.INTERNAL, f"internal error: no write request of kind {kind}")
        try:
            return command(data)
        except DecodeError as error:
            raise undecodable(error) from None

    def _settle(self, data: bytes) -> SettleCommand:
        bill = request_bytes.bill_of(data)
        return SettleCommand(checked_bill(bill, self._ecert_key, self._clock), persist=True)

    def _pre_settle(self, data: bytes) -> SettleCommand:
        bill = convert.bill_from_pb(pb.PreSettleRequest.FromString(data).request)
        return SettleCommand(checked_bill(bill, self._ecert_key, self._clock), persist=False)

    @staticmethod
    def _reverse(data: bytes) -> ReverseCommand:
        request = pb.ReverseRequest.FromString(data)
        _refuse_invalid(reversal_violations(request.msgid, request.fixmedins_code, request.setl_id))
        return ReverseCommand(request.msgid, request.fixmedins_code, request.setl_id)


def _answer(outcome: Any) -> bytes:
    if isinstance(outcome, Settlement):
        return wire.settled(result_bytes.settle_result(outcome))
    if isinstance(outcome, Refused):
        return wire.refused(outcome)
    return wire.refused(batch_failure(outcome if isinstance(outcome, Exception) else TypeError(type(outcome).__name__)))


def checked_bill(bill: Bill, ecert_key: bytes | None, clock: Clock) -> Bill:
    """The bill with the person its e-insurance certificate identifies (the
    token verified and dropped), or FIELD_INVALID listing every bad field."""
    violations: list[FieldViolation] = []
    token = bill.ecert_token
    if token:
        bill = replace(bill, ecert_token="")
        if ecert_key is None:
            violations.append(FieldViolation("ecert_token", "e-insurance certificates are not accepted here (no signing key configured)"))
        else:
            try:
                claims = ecert.verify(ecert_key, token, clock.now())
            except ecert.EcertError as error:
                violations.append(FieldViolation("ecert_token", f"refused: {error}"))
            else:
                if bill.psn_no and bill.psn_no != claims.psn_no:
                    violations.append(FieldViolation("psn_no", "does not match the e-insurance certificate"))
                bill = replace(bill, psn_no=claims.psn_no, ecert_nonce=claims.nonce,
                               ecert_expires_us=claims.expires_s * 1_000_000)
    shape = bill_violations(bill, person_from_token=bool(token))
    if violations or shape:
        raise invalid(violations + shape)
    return bill


def _refuse_invalid(violations: list[FieldViolation]) -> None:
    if violations:
        raise invalid(violations)

"""Why a request is refused: result codes with a documented precedence.

A request is checked in this order and refused with the first that applies
(docs/api.md: "Errors, in order of precedence"):

1. FIELD_INVALID          a field is malformed (every malformed field is listed)
2. IDEMPOTENCY_CONFLICT   the (institution, msgid) was used for another payload
   -- a repeat of an earlier request returns the earlier result here --
3. UNKNOWN_INSTITUTION, UNKNOWN_PERSON, PERSON_MISMATCH, VISIT_NOT_ALLOWED,
   UNKNOWN_ITEM           the bill does not match the reference data
4. NO_POLICY              no policy covers the person for this visit
5. SETTLEMENT_NOT_FOUND, REVERSAL_OF_REVERSAL, ALREADY_REVERSED (reversals)
6. RULE_REFUSED           a regional rule or fund-supervision rule refuses it
7. OVERLOADED, STORAGE_UNAVAILABLE   the service cannot take it now; retry
   with the same msgid
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Reason(enum.Enum):
    FIELD_INVALID = "FIELD_INVALID"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    UNKNOWN_INSTITUTION = "UNKNOWN_INSTITUTION"
    UNKNOWN_PERSON = "UNKNOWN_PERSON"
    PERSON_MISMATCH = "PERSON_MISMATCH"
    VISIT_NOT_ALLOWED = "VISIT_NOT_ALLOWED"
    UNKNOWN_ITEM = "UNKNOWN_ITEM"
    NO_POLICY = "NO_POLICY"
    SETTLEMENT_NOT_FOUND = "SETTLEMENT_NOT_FOUND"
    REVERSAL_OF_REVERSAL = "REVERSAL_OF_REVERSAL"
    ALREADY_REVERSED = "ALREADY_REVERSED"
    RULE_REFUSED = "RULE_REFUSED"
    OVERLOADED = "OVERLOADED"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str  # path in the request, e.g. "fee_lines[2].cnt"
    description: str


@dataclass
class Refused(Exception):
    """A request the service will not carry out; nothing was written."""

    reason: Reason
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


def invalid(violations: list[FieldViolation]) -> Refused:
    fields = ", ".join(v.field for v in violations)
    return Refused(Reason.FIELD_INVALID, f"invalid field(s): {fields}", violations)


def refused_field(reason: Reason, field_path: str, description: str) -> Refused:
    return Refused(reason, f"{field_path}: {description}", [FieldViolation(field_path, description)])

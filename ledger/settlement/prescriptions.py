"""E-prescriptions: issued with a visit, filled at pharmacies. Pure: functions
of (the bill, the recorded prescription, what its live fills took, today).

A pharmacy sale that names a recorded prescription must be the same
person's, inside its validity, and every line an item of it in a quantity
within what is left (a partial fill leaves the rest; a reversed fill gives
its quantities back). A prescription-only drug (catalogue flag rx_only) is
sold at a pharmacy only against a prescription.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from medsettle.ledger.errors import Reason, refused_field
from medsettle.ledger.reference.internet import RegionInternetPolicy
from medsettle.ledger.reference.models import CatalogueItem
from medsettle.ledger.settlement.internet import rule_refused
from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription


@dataclass(frozen=True, slots=True)
class RxRecord:
    """A recorded e-prescription."""

    prescribing_code: str
    rx_id: str
    setl_id: str  # the visit that issued it
    psn_no: str
    prescriber_id: str
    issued_day: str  # YYYY-MM-DD, China time
    valid_to: str  # YYYY-MM-DD, inclusive
    items: tuple[tuple[str, int], ...]
    voided: bool = False  # the issuing visit was reversed

    def left(self, filled: Mapping[str, int]) -> dict[str, int]:
        """hilist_code -> quantity not yet filled."""
        return {code: cnt - filled.get(code, 0) for code, cnt in self.items}


def record_of(bill: Bill, rx: Prescription, setl_id: str, today: dt.date, valid_days: int) -> RxRecord:
    return RxRecord(bill.fixmedins_code, rx.rx_id, setl_id, bill.psn_no, rx.prescriber_id, today.isoformat(),
                    (today + dt.timedelta(days=valid_days - 1)).isoformat(), rx.items)


def valid_days_of(rx: Prescription, policy: RegionInternetPolicy) -> int:
    """The prescription's validity under the prescriber's region's rule, or RULE_REFUSED."""
    if rx.valid_days > policy.rx_max_valid_days:
        raise rule_refused("RX_VALIDITY", "prescription.valid_days",
                           f"at most {policy.rx_max_valid_days} days here, got {rx.valid_days}")
    return rx.valid_days or policy.rx_default_valid_days


def check_prescribed_items(rx: Prescription, catalogue_item: Callable[[str], CatalogueItem | None]) -> None:
    for i, (code, _) in enumerate(rx.items):
        if catalogue_item(code) is None:
            raise refused_field(Reason.UNKNOWN_ITEM, f"prescription.items[{i}].hilist_code",
                                "not in the treatment place's catalogue")


def check_rx_only(bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]]) -> None:
    """A pharmacy sells a prescription-only drug only against a prescription."""
    if bill.rx_id:
        return
    for i, (_, item) in enumerate(priced):
        if item.rx_only:
            raise rule_refused("RX_REQUIRED", f"fee_lines[{i}].hilist_code",
                               f"{item.code} is prescription-only: the sale must name its e-prescription (rx_id)")


def check_sale(bill: Bill, record: RxRecord, filled: Mapping[str, int], today: dt.date) -> None:
    """Refuses a pharmacy sale that does not match the recorded prescription."""
    if record.psn_no != bill.psn_no:
        raise rule_refused("RX_OTHER_PERSON", "psn_no", "the e-prescription was issued to another person")
    if record.voided:
        raise rule_refused("RX_VOID", "rx_id", "the visit that issued this e-prescription was reversed")
    if today.isoformat() > record.valid_to:
        raise rule_refused("RX_EXPIRED", "rx_id", f"the e-prescription was valid until {record.valid_to}")
    left = record.left(filled)
    if not any(cnt > 0 for cnt in left.values()):
        raise rule_refused("RX_ALREADY_FILLED", "rx_id", "this e-prescription was already filled in full")
    taking: dict[str, int] = {}
    for i, line in enumerate(bill.fee_lines):
        if line.hilist_code not in left:
            raise rule_refused("RX_ITEM_NOT_PRESCRIBED", f"fee_lines[{i}].hilist_code",
                               f"{line.hilist_code} is not on the e-prescription")
        taking[line.hilist_code] = taking.get(line.hilist_code, 0) + line.cnt
        if taking[line.hilist_code] > left[line.hilist_code]:
            raise rule_refused("RX_QUANTITY_EXCEEDED", f"fee_lines[{i}].cnt",
                               f"{left[line.hilist_code]} of {line.hilist_code} left on the e-prescription")


def fill_of(bill: Bill) -> dict[str, int]:
    """hilist_code -> quantity this sale takes from its prescription."""
    taking: dict[str, int] = {}
    for line in bill.fee_lines:
        taking[line.hilist_code] = taking.get(line.hilist_code, 0) + line.cnt
    return taking

"""Internet-hospital agreements (补充协议). Pure.

An internet hospital settles under the supplementary agreement its host
physical hospital signed with the agency: which visit kinds and item kinds,
from when to when, and whether it is active, suspended or ended. Who is paid
(the internet hospital or its host) follows the agreement in force.

Refusals, in this order (RULE_REFUSED, rule named): AGREEMENT_MISSING (none
for the visit kind), AGREEMENT_SUSPENDED, AGREEMENT_ENDED, AGREEMENT_NOT_IN_FORCE
(an active one, outside its dates), AGREEMENT_SCOPE (a line outside its item kinds).
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from medsettle.ledger.reference.internet import Agreement, AgreementStatus
from medsettle.ledger.reference.models import CatalogueItem
from medsettle.ledger.settlement.internet import rule_refused
from medsettle.ledger.settlement.model import FeeLine, VisitType


def merged(reference: Iterable[Agreement], stored: Iterable[Agreement]) -> list[Agreement]:
    """The agreements in force of record: the reference document's, each
    replaced by an operator's of the same agreement_no; by agreement_no."""
    by_no = {a.agreement_no: a for a in reference}
    by_no.update((a.agreement_no, a) for a in stored)
    return [by_no[no] for no in sorted(by_no)]


def agreement_in_force(agreements: Sequence[Agreement], visit_type: VisitType, today: dt.date) -> Agreement:
    """The agreement a visit of this kind settles under today, or RULE_REFUSED."""
    kind = visit_type.name.lower()
    day = today.isoformat()
    covering = [a for a in agreements if kind in a.visit_types]
    if not covering:
        raise rule_refused("AGREEMENT_MISSING", "fixmedins_code",
                           f"no agreement with the agency covers {kind} visits of this internet hospital")
    dated = [a for a in covering if a.valid_from <= day <= a.valid_to]
    for a in dated:
        if a.status == AgreementStatus.ACTIVE:
            return a
    if any(a.status == AgreementStatus.SUSPENDED for a in dated):
        raise rule_refused("AGREEMENT_SUSPENDED", "fixmedins_code", "the agreement with the agency is suspended")
    if any(a.status == AgreementStatus.ENDED for a in covering):
        raise rule_refused("AGREEMENT_ENDED", "fixmedins_code", "the agreement with the agency has ended")
    spans = ", ".join(f"{a.valid_from}..{a.valid_to}" for a in covering)
    raise rule_refused("AGREEMENT_NOT_IN_FORCE", "fixmedins_code",
                       f"no agreement is in force on {day} (agreements valid {spans})")


def check_scope(agreement: Agreement, priced: Sequence[tuple[FeeLine, CatalogueItem]]) -> None:
    """Refuses a line whose item kind the agreement does not cover (empty: any)."""
    if not agreement.item_kinds:
        return
    for i, (_, item) in enumerate(priced):
        if item.item_kind not in agreement.item_kinds:
            raise rule_refused("AGREEMENT_SCOPE", f"fee_lines[{i}].hilist_code",
                               f"{item.code} ({item.item_kind}) is outside agreement {agreement.agreement_no}")

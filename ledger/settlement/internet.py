"""Internet-hospital follow-ups and remote-service coverage. Pure: functions
of (bill, regional policy, today); no I/O, no clock.

- An internet follow-up needs a prior offline diagnosis of a common or
  chronic disease within the treatment place's window; no online first
  diagnosis.
- The insurance place decides what the fund covers: items excluded online
  become full self-pay (class C); remote consultation lines are recognised
  at a share of the fee schedule (FEE_SHARE) or paid at a fixed ratio
  (RATIO); whether the personal account may pay an online visit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Sequence

from medsettle.ledger.errors import FieldViolation, Reason, Refused
from medsettle.ledger.money import BASIS_POINTS, round_half_up_div
from medsettle.ledger.reference.internet import RegionInternetPolicy, RemoteCoverage, RemoteMode
from medsettle.ledger.reference.models import CatalogueItem, Category
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType


def rule_refused(rule: str, field_path: str, description: str) -> Refused:
    """RULE_REFUSED naming the rule (message and ErrorInfo metadata) and the field at fault."""
    return Refused(Reason.RULE_REFUSED, f"{rule}: {description}", [FieldViolation(field_path, description)], {"rule": rule})


def followup_field_violations(bill: Bill) -> list[FieldViolation]:
    """Shape checks of an internet follow-up: the facts the rules need are present."""
    if bill.visit_type != VisitType.INTERNET_FOLLOWUP:
        return []
    out = []
    if not bill.diag_code:
        out.append(FieldViolation("diag_code", "required for an internet follow-up"))
    if not bill.prior_offline_diag_date:
        out.append(FieldViolation("prior_offline_diag_date", "required for an internet follow-up (no online first diagnosis)"))
    return out


def prescription_field_violations(bill: Bill) -> list[FieldViolation]:
    if bill.rx_id and bill.visit_type == VisitType.PHARMACY and not bill.prescribing_fixmedins_code:
        return [FieldViolation("prescribing_fixmedins_code", "required with rx_id: the institution that issued the prescription")]
    if bill.prescribing_fixmedins_code and not bill.rx_id:
        return [FieldViolation("rx_id", "required with prescribing_fixmedins_code")]
    return []


def check_followup(bill: Bill, policy: RegionInternetPolicy, today: dt.date) -> None:
    """Refuses an internet follow-up the treatment place's policy does not allow."""
    prior = dt.date.fromisoformat(bill.prior_offline_diag_date)
    if prior > today:
        raise rule_refused("FOLLOWUP_PRIOR_DIAGNOSIS", "prior_offline_diag_date",
                           f"the prior offline diagnosis ({prior}) is after the visit ({today})")
    age_days = (today - prior).days
    if age_days > policy.followup_window_days:
        raise rule_refused(
            "FOLLOWUP_WINDOW", "prior_offline_diag_date",
            f"the prior offline diagnosis is {age_days} days old; the treatment place allows "
            f"{policy.followup_window_days} days for an online follow-up",
        )
    if policy.followup_diag_prefixes and not bill.diag_code.upper().startswith(policy.followup_diag_prefixes):
        raise rule_refused(
            "FOLLOWUP_DISEASE", "diag_code",
            "not a common or chronic disease the treatment place allows online follow-ups for (no online first diagnosis)",
        )


def _share_item(item: CatalogueItem, share_bp: int) -> CatalogueItem:
    """The item as the fund recognises only share_bp of it: the rest is the
    patient's first self-pay (on top of the item's own class-B share)."""
    if item.category == Category.C:
        return item
    recognised_bp = round_half_up_div(share_bp * (BASIS_POINTS - item.selfpay_prop_bp), BASIS_POINTS)
    return replace(item, category=Category.B, selfpay_prop_bp=BASIS_POINTS - recognised_bp)


def effective_item(
    item: CatalogueItem, visit_type: VisitType, insurance_place: RegionInternetPolicy
) -> CatalogueItem:
    """The catalogue entry as the insurance place's internet policy applies it."""
    if visit_type == VisitType.INTERNET_FOLLOWUP and (
        item.item_kind in insurance_place.online_excluded_item_kinds or item.code in insurance_place.online_excluded_items
    ):
        return replace(item, category=Category.C, selfpay_prop_bp=0)
    remote = insurance_place.remote
    if remote is not None and remote.mode == RemoteMode.FEE_SHARE and item.item_kind in remote.item_kinds:
        return _share_item(item, remote.fee_share_bp)
    return item


def remote_ratio_bp(priced: Sequence[tuple[FeeLine, CatalogueItem]], remote: RemoteCoverage | None) -> int | None:
    """The fund ratio of a remote bill under RATIO coverage, or None when the
    ordinary ratio applies. A remote consultation under RATIO coverage is
    billed on its own: one ratio per bill (the split has one ratio)."""
    if remote is None or remote.mode != RemoteMode.RATIO:
        return None
    remote_lines = [i for i, (_, item) in enumerate(priced) if item.item_kind in remote.item_kinds]
    if not remote_lines:
        return None
    if len(remote_lines) != len(priced):
        other = next(i for i in range(len(priced)) if i not in remote_lines)
        raise rule_refused("REMOTE_BILLED_ALONE", f"fee_lines[{other}].hilist_code",
                           "remote consultation / telemedicine is paid at its own ratio here: bill it on its own")
    return remote.ratio_bp

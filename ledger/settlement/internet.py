"""Internet-hospital follow-ups and remote-service coverage. Pure: functions
of (bill, regional policy, today); no I/O, no clock.

- An internet follow-up needs a prior offline diagnosis of a common or
  chronic disease within the treatment place's window; no online first
  diagnosis.
- The treatment place decides what may be settled online: the item kinds
  of an online follow-up (consultation and drugs), the e-insurance
  certificate, persons insured elsewhere (Jiangsu).
- The insurance place decides what the fund covers: items excluded online
  become full self-pay (class C); the fund pays a share of a remote
  consultation line's eligible amount directly, outside the deductible and
  the ratio (Fujian: 30 % of the fee schedule; Guizhou: 70-85 % by the
  patient's insured county); whether the personal account may pay an
  online visit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Sequence

from medsettle.ledger.errors import FieldViolation, Reason, Refused
from medsettle.ledger.reference.internet import RegionInternetPolicy, RemoteCoverage
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


def check_online_identity(bill: Bill, treatment_admdvs: str, policy: RegionInternetPolicy) -> None:
    """Refuses an online settlement the treatment place's identity rules do not allow."""
    if policy.online_local_insured_only and bill.insuplc_admdvs != treatment_admdvs:
        raise rule_refused("ONLINE_LOCAL_INSURED_ONLY", "insuplc_admdvs",
                           f"online follow-ups here are for persons insured in {treatment_admdvs} only")
    if policy.online_ecert_required and not bill.ecert_nonce:
        raise rule_refused("ECERT_REQUIRED", "ecert_token",
                           "online settlement here needs the e-insurance certificate (real-name check); "
                           "a bare psn_no is not accepted")


def check_online_scope(priced: Sequence[tuple[FeeLine, CatalogueItem]], policy: RegionInternetPolicy) -> None:
    """Refuses a line an online follow-up may not bill at the treatment place."""
    allowed = policy.online_item_kinds
    if allowed is None:
        return
    for i, (_, item) in enumerate(priced):
        if item.item_kind not in allowed:
            raise rule_refused("ONLINE_SCOPE", f"fee_lines[{i}].hilist_code",
                               f"{item.code} ({item.item_kind}) is not online care here; an online follow-up "
                               f"bills {', '.join(sorted(allowed)) or 'nothing'}")


def check_followup(bill: Bill, policy: RegionInternetPolicy, today: dt.date) -> None:
    """Refuses an internet follow-up the treatment place's policy does not allow."""
    prior = dt.date.fromisoformat(bill.prior_offline_diag_date)
    if prior > today:
        raise rule_refused("FOLLOWUP_PRIOR_DIAGNOSIS", "prior_offline_diag_date",
                           f"the prior offline diagnosis ({prior}) is after the visit ({today})")
    earliest = policy.followup_earliest(today)
    if prior < earliest:
        window = (f"{policy.followup_window_months} calendar months" if policy.followup_window_months
                  else f"{policy.followup_window_days} days")
        raise rule_refused(
            "FOLLOWUP_WINDOW", "prior_offline_diag_date",
            f"the prior offline diagnosis ({prior}) is before {earliest}; the treatment place allows "
            f"{window} for an online follow-up",
        )
    if policy.followup_diag_prefixes and not bill.diag_code.upper().startswith(policy.followup_diag_prefixes):
        raise rule_refused(
            "FOLLOWUP_DISEASE", "diag_code",
            "not a common or chronic disease the treatment place allows online follow-ups for (no online first diagnosis)",
        )


def effective_item(
    item: CatalogueItem, visit_type: VisitType, insurance_place: RegionInternetPolicy
) -> CatalogueItem:
    """The catalogue entry as the insurance place's internet policy applies it."""
    if visit_type == VisitType.INTERNET_FOLLOWUP and (
        item.item_kind in insurance_place.online_excluded_item_kinds or item.code in insurance_place.online_excluded_items
    ):
        return replace(item, category=Category.C, selfpay_prop_bp=0)
    return item


def direct_lines(priced: Sequence[tuple[FeeLine, CatalogueItem]], remote: RemoteCoverage | None,
                 insuplc_admdvs: str) -> tuple[tuple[int, int], ...]:
    """The remote lines the fund pays directly, with the share it pays
    (SplitTerms.direct_lines); none when the insurance place has no remote
    coverage for the person's insured region."""
    if remote is None:
        return ()
    bp = remote.fund_bp(insuplc_admdvs)
    if bp is None:
        return ()
    return tuple((i, bp) for i, (_, item) in enumerate(priced)
                 if item.item_kind in remote.item_kinds and item.category != Category.C)

"""Host-hospital budget quota (总额管理). Pure.

An internet hospital shares its host physical hospital's annual quota: the
pooled-fund payments (hifp_pay) of the host and of every internet hospital
it hosts count against it. What happens when a settlement would take the
year's use above the quota is configured per quota: warn (settle, flag
QUOTA_REACHED) or refuse (RULE_REFUSED, nothing written).
"""

from __future__ import annotations

import enum

from medsettle.ledger.reference.internet import HostQuota, OnQuotaReached
from medsettle.ledger.reference.models import Institution, InstitutionKind

QUOTA_RULE = "QUOTA_REACHED"


class QuotaDecision(enum.Enum):
    WITHIN = "within"
    WARN = "warn"
    REFUSE = "refuse"


def quota_holder(institution: Institution) -> str | None:
    """The hospital whose quota a settlement counts against (pharmacies: none)."""
    if institution.kind == InstitutionKind.INTERNET_HOSPITAL:
        return institution.host_code
    if institution.kind == InstitutionKind.HOSPITAL:
        return institution.code
    return None


# an enum member read from its class is a descriptor call: read once
WITHIN, WARN, REFUSE = QuotaDecision.WITHIN, QuotaDecision.WARN, QuotaDecision.REFUSE
_ON_REACH_REFUSE = OnQuotaReached.REFUSE


def quota_decision(quota: HostQuota, used_fen: int, hifp_pay_fen: int) -> QuotaDecision:
    """used_fen: the year's use before this settlement."""
    if hifp_pay_fen <= 0 or used_fen + hifp_pay_fen <= quota.quota_fen:
        return WITHIN
    return REFUSE if quota.on_reach is _ON_REACH_REFUSE else WARN

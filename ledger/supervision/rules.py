"""The real-time audit rules. Pure: a function of the bill, its priced
lines, the rule configuration in force at the treatment place and what the
person did earlier the same day (and, for follow-ups, whether an offline
visit for the disease is on record). Each finding is a flag or a refusal,
as configured per rule (reference section `audit_rules`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from medsettle.ledger.reference.internet import AuditAction, AuditRule, AuditRuleConfig
from medsettle.ledger.reference.models import CatalogueItem
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType


@dataclass(slots=True)
class DayActivity:
    """A person's settled visits on one China day, as the rules need them."""

    visits: int = 0
    items: set[str] = field(default_factory=set)  # hilist_codes billed that day


@dataclass(frozen=True, slots=True)
class Finding:
    rule: AuditRule
    action: AuditAction
    field: str  # the request field at fault
    detail: str  # plain words, no personal data


def evaluate(
    configs: Sequence[AuditRuleConfig],
    bill: Bill,
    priced: Sequence[tuple[FeeLine, CatalogueItem]],
    day: DayActivity,
    prior_offline_visit: bool,
) -> list[Finding]:
    """Every finding of the rules in force, in rule order."""
    return evaluate_checks(checks_of(configs), bill, priced, day, prior_offline_visit)


Check = Callable[[AuditRuleConfig, Bill, Sequence[tuple[FeeLine, CatalogueItem]], DayActivity, bool], "Finding | None"]


def checks_of(configs: Sequence[AuditRuleConfig]) -> tuple[tuple[Check, AuditRuleConfig], ...]:
    """The rules in force with their check functions, looked up once (the
    writer keeps them per region) rather than once per bill and rule."""
    return tuple((_CHECKS[config.rule], config) for config in configs)


def evaluate_checks(
    checks: Sequence[tuple[Check, AuditRuleConfig]],
    bill: Bill,
    priced: Sequence[tuple[FeeLine, CatalogueItem]],
    day: DayActivity,
    prior_offline_visit: bool,
) -> list[Finding]:
    """evaluate, of the rules checks_of gave."""
    findings: list[Finding] = []
    for check, config in checks:
        finding = check(config, bill, priced, day, prior_offline_visit)
        if finding is not None:
            findings.append(finding)
    return findings


def _duplicate_item(config: AuditRuleConfig, bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]],
                    day: DayActivity, prior: bool) -> Finding | None:
    seen = day.items
    in_bill: set[str] = set()
    for i, (line, item) in enumerate(priced):
        if item.item_kind in config.item_kinds:
            if item.code in seen or item.code in in_bill:
                return Finding(config.rule, config.action, f"fee_lines[{i}].hilist_code",
                               f"{item.code} billed more than once for the person on the same day")
            in_bill.add(item.code)
    return None


def _quantity(config: AuditRuleConfig, bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]],
              day: DayActivity, prior: bool) -> Finding | None:
    for i, (line, item) in enumerate(priced):
        limit = config.max_cnt_by_item.get(item.code, config.max_cnt)
        if line.cnt > limit:
            return Finding(config.rule, config.action, f"fee_lines[{i}].cnt",
                           f"quantity {line.cnt} of {item.code} above the limit {limit}")
    return None


def _drug_diagnosis(config: AuditRuleConfig, bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]],
                    day: DayActivity, prior: bool) -> Finding | None:
    # Only a bill that states its diagnosis is checked: diag_code is optional
    # outside internet follow-ups, and a missing one is not a mismatch.
    diag = bill.diag_code.upper()
    if not diag:
        return None
    for i, (line, item) in enumerate(priced):
        prefixes = config.diag_prefixes_by_item.get(item.code)
        if prefixes and not diag.startswith(prefixes):
            return Finding(config.rule, config.action, f"fee_lines[{i}].hilist_code",
                           f"{item.code} is indicated for {', '.join(prefixes)}; diagnosis {diag} is not among them")
    return None


def _followup_prior_visit(config: AuditRuleConfig, bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]],
                          day: DayActivity, prior: bool) -> Finding | None:
    if bill.visit_type == VisitType.INTERNET_FOLLOWUP and not prior:
        return Finding(config.rule, config.action, "prior_offline_diag_date",
                       "no offline visit for this disease category is on record within the follow-up window")
    return None


def _visits_per_day(config: AuditRuleConfig, bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]],
                    day: DayActivity, prior: bool) -> Finding | None:
    if day.visits + 1 > config.max_visits:
        return Finding(config.rule, config.action, "psn_no",
                       f"visit {day.visits + 1} of the person today; at most {config.max_visits} allowed")
    return None


_CHECKS = {
    AuditRule.DUP_ITEM_SAME_DAY: _duplicate_item,
    AuditRule.QTY_ABOVE_LIMIT: _quantity,
    AuditRule.DRUG_DIAG_MISMATCH: _drug_diagnosis,
    AuditRule.FOLLOWUP_WITHOUT_PRIOR_VISIT: _followup_prior_visit,
    AuditRule.VISITS_PER_DAY: _visits_per_day,
}
assert set(_CHECKS) == set(AuditRule)

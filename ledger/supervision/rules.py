"""The real-time audit rules. Pure: a function of the bill, its priced
lines, the rule configuration in force at the treatment place and what the
person did earlier the same day (and, for follow-ups, whether an offline
visit for the disease is on record). Each finding is a flag or a refusal,
as configured per rule (reference section `audit_rules`).

The writer evaluates them for every bill, and most bills break none: a
RuleSet prepares a treatment place's rules once (the writer keeps one per
region), so a rule that cannot apply to a bill costs a comparison, not a
call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AbstractSet, Sequence

from medsettle.ledger.reference.internet import AuditAction, AuditRule, AuditRuleConfig
from medsettle.ledger.reference.models import CatalogueItem
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType, quick_value

_FOLLOWUP = VisitType.INTERNET_FOLLOWUP


@dataclass(slots=True, eq=False)
class DayActivity:
    """A person's settled visits on one China day, as the rules need them.
    Shared between persons and never changed (supervision/day_visits.py):
    equal and hashed as itself."""

    visits: int = 0
    items: AbstractSet[str] = field(default_factory=set)  # hilist_codes billed that day, never changed in place


@quick_value  # built for most flagged bills
@dataclass(frozen=True, slots=True)
class Finding:
    rule: AuditRule
    action: AuditAction
    field: str  # the request field at fault
    detail: str  # plain words, no personal data
    code: str  # rule.value: the name stored and answered, read once per rule rather than per flag
    refuses: bool  # action is REFUSE


KNOWN_FINDINGS = 4096  # findings a rule keeps for reuse (a finding is immutable)


class _Rule:
    """One configured rule with what its findings share."""

    __slots__ = ("config", "code", "refuses", "known")

    def __init__(self, config: AuditRuleConfig) -> None:
        self.config = config
        self.code = config.rule.value
        self.refuses = config.action == AuditAction.REFUSE
        # The findings of a rule that fires on many bills (a duplicate item,
        # the day's visits) repeat: each is built once, by what it says.
        self.known: dict[object, Finding] = {}

    def found(self, field_path: str, detail: str) -> Finding:
        return Finding(self.config.rule, self.config.action, field_path, detail, self.code, self.refuses)

    def keep(self, key: object, finding: Finding) -> Finding:
        if len(self.known) >= KNOWN_FINDINGS:
            self.known.clear()
        self.known[key] = finding
        return finding


class RuleSet:
    """The rules in force at one treatment place, at most one per rule,
    evaluated in AuditRule order. What decides whether a rule can apply is
    taken from its configuration once: the lowest quantity limit, whether
    any item has indicated diagnoses."""

    __slots__ = ("_dup", "_dup_kinds", "_qty", "_qty_floor", "_diag", "_followup", "_visits", "_max_visits",
                 "refuses", "checks_followups")

    def __init__(self, configs: Sequence[AuditRuleConfig]) -> None:
        rules: dict[AuditRule, _Rule] = {}
        for config in configs:
            if config.rule in rules:
                raise ValueError(f"{config.rule.value} configured twice")
            rules[config.rule] = _Rule(config)
        self._dup = rules.get(AuditRule.DUP_ITEM_SAME_DAY)
        self._dup_kinds = self._dup.config.item_kinds if self._dup else frozenset()
        self._qty = rules.get(AuditRule.QTY_ABOVE_LIMIT)
        self._qty_floor = min((self._qty.config.max_cnt, *self._qty.config.max_cnt_by_item.values())) if self._qty else 0
        diag = rules.get(AuditRule.DRUG_DIAG_MISMATCH)
        self._diag = diag if diag is not None and diag.config.diag_prefixes_by_item else None
        self._followup = rules.get(AuditRule.FOLLOWUP_WITHOUT_PRIOR_VISIT)
        self._visits = rules.get(AuditRule.VISITS_PER_DAY)
        self._max_visits = self._visits.config.max_visits if self._visits else 0
        self.refuses = any(rule.refuses for rule in rules.values())  # some finding may refuse the bill
        # whether a follow-up needs to know of a prior offline visit (a query)
        self.checks_followups = self._followup is not None

    def evaluate(self, bill: Bill, priced: Sequence[tuple[FeeLine, CatalogueItem]], day: DayActivity,
                 prior_offline_visit: bool) -> list[Finding]:
        """Every finding, in rule order."""
        findings: list[Finding] = []
        if self._dup is not None:
            found = _duplicate_item(self._dup, self._dup_kinds, priced, day.items)
            if found is not None:
                findings.append(found)
        if self._qty is not None:
            floor = self._qty_floor
            for line, _ in priced:
                if line.cnt > floor:  # some line may be above its limit
                    found = _quantity(self._qty, priced)
                    if found is not None:
                        findings.append(found)
                    break
        if self._diag is not None and bill.diag_code:
            found = _drug_diagnosis(self._diag, bill.diag_code.upper(), priced)
            if found is not None:
                findings.append(found)
        if self._followup is not None and not prior_offline_visit and bill.visit_type == _FOLLOWUP:
            findings.append(self._followup.found(
                "prior_offline_diag_date",
                "no offline visit for this disease category is on record within the follow-up window"))
        if self._visits is not None and day.visits >= self._max_visits:
            findings.append(self._visits.known.get(day.visits) or self._too_many_visits(day.visits))
        return findings

    def _too_many_visits(self, visits: int) -> Finding:
        assert self._visits is not None
        return self._visits.keep(visits, self._visits.found(
            "psn_no", f"visit {visits + 1} of the person today; at most {self._max_visits} allowed"))


def evaluate(
    configs: Sequence[AuditRuleConfig],
    bill: Bill,
    priced: Sequence[tuple[FeeLine, CatalogueItem]],
    day: DayActivity,
    prior_offline_visit: bool,
) -> list[Finding]:
    """Every finding of the rules in force, in rule order."""
    return RuleSet(configs).evaluate(bill, priced, day, prior_offline_visit)


def _duplicate_item(rule: _Rule, kinds: frozenset[str], priced: Sequence[tuple[FeeLine, CatalogueItem]],
                    seen: AbstractSet[str]) -> Finding | None:
    # the bill's earlier codes of these kinds: the first alone (most bills have one at most), a set after it
    first: str | None = None
    more: set[str] | None = None
    i = 0
    for _, item in priced:
        if item.item_kind in kinds:
            code = item.code
            if code in seen or code == first or (more is not None and code in more):
                return rule.known.get((i, code)) or rule.keep((i, code), rule.found(
                    f"fee_lines[{i}].hilist_code", f"{code} billed more than once for the person on the same day"))
            if first is None:
                first = code
            elif more is None:
                more = {code}
            else:
                more.add(code)
        i += 1
    return None


def _quantity(rule: _Rule, priced: Sequence[tuple[FeeLine, CatalogueItem]]) -> Finding | None:
    config = rule.config
    for i, (line, item) in enumerate(priced):
        limit = config.max_cnt_by_item.get(item.code, config.max_cnt)
        if line.cnt > limit:
            return rule.found(f"fee_lines[{i}].cnt", f"quantity {line.cnt} of {item.code} above the limit {limit}")
    return None


def _drug_diagnosis(rule: _Rule, diag: str, priced: Sequence[tuple[FeeLine, CatalogueItem]]) -> Finding | None:
    # Only a bill that states its diagnosis is checked: diag_code is optional
    # outside internet follow-ups, and a missing one is not a mismatch.
    for i, (_, item) in enumerate(priced):
        prefixes = rule.config.diag_prefixes_by_item.get(item.code)
        if prefixes and not diag.startswith(prefixes):
            return rule.found(f"fee_lines[{i}].hilist_code",
                              f"{item.code} is indicated for {', '.join(prefixes)}; diagnosis {diag} is not among them")
    return None

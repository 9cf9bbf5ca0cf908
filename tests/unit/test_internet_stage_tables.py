"""The tables the writer's Internet+ stage prepares once (a region's audit
rules, an institution's site, the China day) give what the rules give
evaluated directly, bill by bill."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.reference.internet import AuditAction, AuditRule, AuditRuleConfig
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.reference.models import CatalogueItem, Category, InstitutionKind
from medsettle.ledger.settlement.internet_stage import ChinaDay, Site, china_day
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.quota import quota_holder
from medsettle.ledger.supervision.rules import DayActivity, RuleSet

CODES = ("S0001", "S0002", "XA0101", "XB0201", "C0001")
KINDS = ("service", "drug", "consultation", "remote_consultation")
PREFIXES = ("E10", "E11", "I10", "J4")


def direct_findings(configs, bill, priced, day, prior):  # type: ignore[no-untyped-def]
    """The audit rules as docs/internet-rules.md states them, each rule by
    itself over the bill's lines, in AuditRule order: (rule, action, field, detail)."""
    found = []
    for config in sorted(configs, key=lambda c: list(AuditRule).index(c.rule)):
        finding = None
        if config.rule == AuditRule.DUP_ITEM_SAME_DAY:
            billed: set[str] = set()
            for i, (_, item) in enumerate(priced):
                if item.item_kind in config.item_kinds:
                    if item.code in day.items or item.code in billed:
                        finding = (f"fee_lines[{i}].hilist_code",
                                   f"{item.code} billed more than once for the person on the same day")
                        break
                    billed.add(item.code)
        elif config.rule == AuditRule.QTY_ABOVE_LIMIT:
            for i, (line, item) in enumerate(priced):
                limit = config.max_cnt_by_item.get(item.code, config.max_cnt)
                if line.cnt > limit:
                    finding = (f"fee_lines[{i}].cnt", f"quantity {line.cnt} of {item.code} above the limit {limit}")
                    break
        elif config.rule == AuditRule.DRUG_DIAG_MISMATCH:
            diag = bill.diag_code.upper()
            for i, (_, item) in enumerate(priced):
                prefixes = config.diag_prefixes_by_item.get(item.code)
                if diag and prefixes and not diag.startswith(prefixes):
                    finding = (f"fee_lines[{i}].hilist_code",
                               f"{item.code} is indicated for {', '.join(prefixes)}; diagnosis {diag} is not among them")
                    break
        elif config.rule == AuditRule.FOLLOWUP_WITHOUT_PRIOR_VISIT:
            if bill.visit_type == VisitType.INTERNET_FOLLOWUP and not prior:
                finding = ("prior_offline_diag_date",
                           "no offline visit for this disease category is on record within the follow-up window")
        elif day.visits + 1 > config.max_visits:
            finding = ("psn_no", f"visit {day.visits + 1} of the person today; at most {config.max_visits} allowed")
        if finding is not None:
            found.append((config.rule, config.action, *finding))
    return found


limits = st.integers(1, 6)
configs_strategy = st.fixed_dictionaries({}, optional={
    AuditRule.DUP_ITEM_SAME_DAY: st.builds(
        lambda action, kinds: AuditRuleConfig(AuditRule.DUP_ITEM_SAME_DAY, action, item_kinds=frozenset(kinds)),
        st.sampled_from(AuditAction), st.sets(st.sampled_from(KINDS), min_size=1)),
    AuditRule.QTY_ABOVE_LIMIT: st.builds(
        lambda action, cnt, by_item: AuditRuleConfig(AuditRule.QTY_ABOVE_LIMIT, action, max_cnt=cnt,
                                                     max_cnt_by_item=by_item),
        st.sampled_from(AuditAction), limits, st.dictionaries(st.sampled_from(CODES), limits, max_size=3)),
    AuditRule.DRUG_DIAG_MISMATCH: st.builds(
        lambda action, by_item: AuditRuleConfig(AuditRule.DRUG_DIAG_MISMATCH, action, diag_prefixes_by_item=by_item),
        st.sampled_from(AuditAction),
        st.dictionaries(st.sampled_from(CODES), st.lists(st.sampled_from(PREFIXES), max_size=2).map(tuple), max_size=3)),
    AuditRule.FOLLOWUP_WITHOUT_PRIOR_VISIT: st.builds(
        lambda action: AuditRuleConfig(AuditRule.FOLLOWUP_WITHOUT_PRIOR_VISIT, action), st.sampled_from(AuditAction)),
    AuditRule.VISITS_PER_DAY: st.builds(
        lambda action, most: AuditRuleConfig(AuditRule.VISITS_PER_DAY, action, max_visits=most),
        st.sampled_from(AuditAction), limits),
})
items_strategy = st.builds(lambda code, kind: CatalogueItem(code, code, Category.A, item_kind=kind),
                           st.sampled_from(CODES), st.sampled_from(KINDS))


@settings(max_examples=400)
@given(configs_strategy, st.permutations(list(AuditRule)),
       st.lists(st.tuples(items_strategy, st.integers(1, 8)), min_size=1, max_size=5),
       st.sampled_from(("", "e11.9", "I10", "J45", "K29")), st.sampled_from(VisitType),
       st.integers(0, 8), st.sets(st.sampled_from(CODES)), st.booleans())
def test_a_rule_set_finds_what_the_rules_find_one_by_one(configs, order, lines, diag, visit_type, visits, items,
                                                         prior) -> None:
    chosen = [configs[rule] for rule in order if rule in configs]  # any order: findings come in rule order
    priced = [(FeeLine(str(n), item.code, cnt, 100), item) for n, (item, cnt) in enumerate(lines)]
    bill = Bill("M1", "H1", "P1", 310, "440100", visit_type, tuple(line for line, _ in priced), diag_code=diag)
    day = DayActivity(visits, items)
    rules = RuleSet(chosen)
    expected = direct_findings(chosen, bill, priced, day, prior)
    for _ in range(2):  # the second time from the findings the rules kept
        found = rules.evaluate(bill, priced, day, prior)
        assert [(f.rule, f.action, f.field, f.detail) for f in found] == expected
        assert all(f.code == f.rule.value and f.refuses == (f.action == AuditAction.REFUSE) for f in found)
    assert rules.refuses == any(c.action == AuditAction.REFUSE for c in chosen)
    assert rules.checks_followups == (AuditRule.FOLLOWUP_WITHOUT_PRIOR_VISIT in configs)


def test_a_site_is_its_institutions_policy_rules_and_quotas() -> None:
    reference = parse_document(sample_document())[0]
    internet = reference.internet
    for institution in reference.institutions.values():
        site = Site(institution, internet, RuleSet(internet.audit_rules(institution.admdvs)))
        assert site.treatment == internet.policy(institution.admdvs)
        assert site.internet_hospital == (institution.kind == InstitutionKind.INTERNET_HOSPITAL)
        holder = quota_holder(institution)
        for year in range(2024, 2029):
            assert site.quotas.get(year) == (internet.quotas.get((holder, year)) if holder else None)
    assert any(site_quota for site_quota in (
        Site(i, internet, RuleSet(())).quotas for i in reference.institutions.values()))  # the sample has quotas


instants = st.datetimes(min_value=dt.datetime(1930, 1, 1), max_value=dt.datetime(2100, 1, 1),
                        timezones=st.sampled_from((dt.timezone.utc, CHINA_TZ, dt.timezone(dt.timedelta(hours=-5)))))


@settings(max_examples=500)
@given(instants, st.lists(st.one_of(instants, st.integers(-30 * 3600, 30 * 3600)), max_size=8))
def test_the_day_known_holds_exactly_the_instants_of_that_china_day(first, later) -> None:
    day = ChinaDay(first)
    assert day.holds(first) and day.date == china_day(first)
    assert (day.iso, day.year) == (day.date.isoformat(), day.date.year)
    # a day whose UTC offset changes (China's daylight saving until 1991) knows only its first instant
    regular = (dt.datetime.combine(day.date, dt.time(), CHINA_TZ).utcoffset()
               == dt.datetime.combine(day.date + dt.timedelta(days=1), dt.time(), CHINA_TZ).utcoffset())
    for at in later:
        if isinstance(at, int):  # seconds from the first instant: near the day's edges
            at = first + dt.timedelta(seconds=at)
        if day.holds(at):
            assert china_day(at) == day.date, (first, at)
        elif regular:
            assert china_day(at) != day.date, (first, at)


def test_the_day_known_covers_the_whole_china_day() -> None:
    midnight = dt.datetime(2026, 10, 15, tzinfo=CHINA_TZ)
    day = ChinaDay(midnight + dt.timedelta(hours=10))
    assert day.holds(midnight) and day.holds(midnight + dt.timedelta(days=1, microseconds=-1))
    assert day.holds(midnight.astimezone(dt.timezone.utc))
    assert not day.holds(midnight - dt.timedelta(microseconds=1))
    assert not day.holds(midnight + dt.timedelta(days=1))

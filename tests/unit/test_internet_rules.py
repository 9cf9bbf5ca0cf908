"""The pure "Internet+" rules: e-cert tokens, follow-up eligibility, the
fee-share coverage, the quota decision, the audit rules, and the reference
sections' validation."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger import ecert
from medsettle.ledger.errors import Refused
from medsettle.ledger.money import BASIS_POINTS, share_bp
from medsettle.ledger.reference.internet import (
    AuditAction, AuditRule, AuditRuleConfig, HostQuota, OnQuotaReached, RegionInternetPolicy,
    ReferenceSectionError, months_before, parse_internet_sections,
)
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.reference.models import CatalogueItem, Category
from medsettle.ledger.settlement.internet import check_followup
from medsettle.ledger.settlement.model import Accumulators, Bill, FeeLine, VisitType
from medsettle.ledger.settlement.quota import QuotaDecision, quota_decision
from medsettle.ledger.settlement.split import SplitTerms, split_bill
from medsettle.ledger.supervision.rules import DayActivity, evaluate

NOW = dt.datetime(2026, 10, 15, 2, 30, tzinfo=dt.timezone.utc)
KEY = b"k" * 32
psn_nos = st.text(alphabet="ABCDEFGHJK0123456789", min_size=1, max_size=30)


@given(psn_nos, st.integers(1, ecert.MAX_TTL_S), st.integers(0, 10**6))
def test_a_token_verifies_until_it_expires(psn_no, ttl_s, age_us):
    token = ecert.issue(KEY, psn_no, NOW, ttl_s)
    at = NOW + dt.timedelta(microseconds=age_us)
    if age_us < ttl_s * 1_000_000:
        claims = ecert.verify(KEY, token, at)
        assert (claims.psn_no, claims.expires_s - claims.issued_s) == (psn_no, ttl_s)
    else:
        with pytest.raises(ecert.EcertError, match="expired"):
            ecert.verify(KEY, token, at)


@settings(max_examples=300)
@given(psn_nos, st.data())
def test_any_changed_character_breaks_the_token(psn_no, data):
    token = ecert.issue(KEY, psn_no, NOW)
    i = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("AQgw-_.0x").filter(lambda c: c != token[i]))
    changed = token[:i] + replacement + token[i + 1:]
    try:
        claims = ecert.verify(KEY, changed, NOW)
    except ecert.EcertError:
        return
    # base64 padding bits: a change that decodes to the same bytes is the same token
    assert claims == ecert.verify(KEY, token, NOW)


def test_the_longest_token_issue_makes_is_well_inside_the_bound():
    far_future = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone.utc)
    longest = ecert.issue(KEY, "A" * 30, far_future, ecert.MAX_TTL_S, nonce="f" * 32)
    assert len(longest) * 2 <= ecert.MAX_TOKEN_CHARS
    assert ecert.verify(KEY, longest, far_future).psn_no == "A" * 30


@pytest.mark.parametrize("nonce", ["x" * 1000, "F" * 32, "0" * 31, ""])
def test_issue_refuses_a_nonce_verify_would_refuse(nonce):
    # a free-form nonce made tokens of any length that no verifier accepts
    with pytest.raises(ecert.EcertError, match="nonce"):
        ecert.issue(KEY, "P1", NOW, nonce=nonce)


def test_an_overlong_token_is_refused_before_any_decoding_or_hmac(monkeypatch):
    def untouched(*_):
        raise AssertionError("an overlong token reached decoding or the HMAC")

    monkeypatch.setattr(ecert, "_sign", untouched)
    monkeypatch.setattr(ecert, "_unb64", untouched)
    monkeypatch.setattr(ecert.hmac, "compare_digest", untouched)
    at_bound = "MSEC1." + "A" * (ecert.MAX_TOKEN_CHARS - len("MSEC1..sig")) + ".sig"
    assert len(at_bound) == ecert.MAX_TOKEN_CHARS
    with pytest.raises(ecert.EcertError, match=f"longer than {ecert.MAX_TOKEN_CHARS}"):
        ecert.verify(KEY, at_bound + "A", NOW)
    with pytest.raises(AssertionError):  # at the bound the token goes on to the HMAC
        ecert.verify(KEY, at_bound, NOW)


def test_tokens_are_not_interchangeable_between_keys_and_nonces_differ():
    a, b = ecert.issue(KEY, "P1", NOW), ecert.issue(KEY, "P1", NOW)
    assert ecert.verify(KEY, a, NOW).nonce != ecert.verify(KEY, b, NOW).nonce
    with pytest.raises(ecert.EcertError, match="signature"):
        ecert.verify(b"z" * 32, a, NOW)
    with pytest.raises(ecert.EcertError):
        ecert.issue(KEY, "P1", NOW, ttl_s=ecert.MAX_TTL_S + 1)
    with pytest.raises(ecert.EcertError):
        ecert.parse_key("ab" * 31)  # 31 bytes


def _followup(prior: str, diag: str = "E11.9") -> Bill:
    return Bill("M1", "H1", "P1", 310, "310100", VisitType.INTERNET_FOLLOWUP, (FeeLine("1", "S0011", 1, 100),),
                diag_code=diag, prior_offline_diag_date=prior)


@given(st.integers(1, 400), st.integers(0, 800))
def test_followup_window_boundary(window_days, age_days):
    today = dt.date(2026, 10, 15)
    policy = RegionInternetPolicy("310100", followup_window_days=window_days, followup_diag_prefixes=("E11",))
    bill = _followup((today - dt.timedelta(days=age_days)).isoformat())
    if age_days <= window_days:
        check_followup(bill, policy, today)
    else:
        with pytest.raises(Refused) as refused:
            check_followup(bill, policy, today)
        assert refused.value.metadata == {"rule": "FOLLOWUP_WINDOW"}


lines_st = st.lists(st.tuples(st.booleans(), st.integers(1, 20), st.integers(1, 100_000)), min_size=1, max_size=6)


@given(lines_st, st.integers(0, BASIS_POINTS), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**7),
       st.integers(0, 10**6), st.booleans(), st.integers(0, 5000))
def test_the_fund_pays_the_remote_share_of_the_schedule_outside_the_deductible(
        lines, bp, deductible, dedc_used, cap_left, balance, acct, delivery):
    """Fujian (30 % of the fee schedule) and Guizhou (70-85 % by county): the
    fund pays bp of each remote line's eligible amount (the price capped at the
    schedule), whatever is left of the deductible; the other lines go through
    the deductible and the ratio as before; the annual cap still bounds it."""
    remote = CatalogueItem("S0101", "remote", Category.A, 0, 60000, "remote_consultation")
    other = CatalogueItem("S0001", "visit", Category.A, 0, 3000, "service")
    priced = [(FeeLine(str(i), "x", cnt, price), remote if is_remote else other)
              for i, (is_remote, cnt, price) in enumerate(lines)]
    direct = tuple((i, bp) for i, (is_remote, _, _) in enumerate(lines) if is_remote)
    terms = SplitTerms(deductible, 10**12, 8000, True, direct)
    before = Accumulators(dedc_used, 10**12 - cap_left, balance)
    split = split_bill(priced, terms, before, acct, delivery)
    assert not split.identity_errors()
    remote_part = sum(share_bp(cnt * min(price, 60000), bp) for is_remote, cnt, price in lines if is_remote)
    ordinary = sum(cnt * min(price, 3000) for is_remote, cnt, price in lines if not is_remote)
    dedc = min(ordinary, max(0, deductible - dedc_used))
    assert split.act_pay_dedc_fen == dedc
    assert split.hifp_pay_fen == min(remote_part + share_bp(ordinary - dedc, 8000), cap_left)
    # the delivery fee is cash: never the fund, never the personal account
    assert split.acct_pay_fen <= split.psn_part_amt_fen - delivery
    assert split.psn_cash_pay_fen >= delivery


@given(st.dates(dt.date(2000, 3, 1), dt.date(2099, 12, 31)), st.integers(1, 24), st.integers(0, 900))
def test_a_window_in_calendar_months_accepts_the_same_day_months_earlier(today, months, age_days):
    policy = RegionInternetPolicy("310100", followup_window_months=months, followup_diag_prefixes=("E11",))
    earliest = months_before(today, months)
    assert earliest.day == today.day or earliest.day == calendar.monthrange(earliest.year, earliest.month)[1]
    assert (earliest.year * 12 + earliest.month) == (today.year * 12 + today.month) - months
    prior = today - dt.timedelta(days=age_days)
    if prior >= earliest:
        check_followup(_followup(prior.isoformat()), policy, today)
    else:
        with pytest.raises(Refused) as refused:
            check_followup(_followup(prior.isoformat()), policy, today)
        assert refused.value.metadata == {"rule": "FOLLOWUP_WINDOW"}


def test_shanghai_two_calendar_months():
    policy = RegionInternetPolicy("310100", followup_window_months=2, followup_diag_prefixes=("E11",))
    check_followup(_followup("2026-08-15"), policy, dt.date(2026, 10, 15))  # 61 days, two calendar months
    with pytest.raises(Refused):
        check_followup(_followup("2026-08-14"), policy, dt.date(2026, 10, 15))
    assert months_before(dt.date(2026, 4, 30), 2) == dt.date(2026, 2, 28)


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(-10**6, 10**7), st.sampled_from(OnQuotaReached))
def test_quota_decision(quota_fen, used_fen, pay_fen, on_reach):
    decision = quota_decision(HostQuota("H1", 2026, quota_fen, on_reach), used_fen, pay_fen)
    if pay_fen <= 0 or used_fen + pay_fen <= quota_fen:
        assert decision == QuotaDecision.WITHIN
    else:
        assert decision.value == on_reach.value


@given(st.integers(1, 50), st.integers(1, 60), st.integers(0, 10))
def test_quantity_and_visit_rules_at_their_bounds(limit, cnt, visits):
    configs = (AuditRuleConfig(AuditRule.QTY_ABOVE_LIMIT, AuditAction.FLAG, max_cnt=limit),
               AuditRuleConfig(AuditRule.VISITS_PER_DAY, AuditAction.REFUSE, max_visits=5))
    item = CatalogueItem("XA0101", "drug", Category.A)
    bill = Bill("M1", "H1", "P1", 310, "440100", VisitType.OUTPATIENT, (FeeLine("1", "XA0101", cnt, 100),))
    found = evaluate(configs, bill, [(bill.fee_lines[0], item)], DayActivity(visits, set()), True)
    expected = ([AuditRule.QTY_ABOVE_LIMIT] if cnt > limit else []) + ([AuditRule.VISITS_PER_DAY] if visits >= 5 else [])
    assert [f.rule for f in found] == expected


def _sections(change):  # type: ignore[no-untyped-def]
    doc = sample_document()
    change(doc)
    return parse_internet_sections(doc, {r["admdvs"] for r in doc["regions"]},
                                   {i["code"]: i["kind"] for i in doc["institutions"]},
                                   {i["code"] for i in doc["catalogue"]["national"]},
                                   {i["code"]: i.get("host_code") for i in doc["institutions"] if i["kind"] == "internet_hospital"})


@pytest.mark.parametrize(("change", "path"), [
    (lambda d: d["host_quotas"][0].update(host_code="H44010100901"), r"host_quotas\[0\]\.host_code"),
    (lambda d: d["host_quotas"][1].update(on_reach="panic"), r"host_quotas\[1\]\.on_reach"),
    (lambda d: d["host_quotas"].append(dict(d["host_quotas"][0])), r"host_quotas\[4\]: a second quota"),
    (lambda d: d["audit_rules"][0].update(rule="GUESS"), r"audit_rules\[0\]\.rule"),
    (lambda d: d["audit_rules"][1]["max_cnt_by_item"].update(NOPE=3), r"audit_rules\[1\]\.max_cnt_by_item\.NOPE"),
    (lambda d: d["audit_rules"].append(dict(d["audit_rules"][0])), r"audit_rules\[8\]\.rule: DUP_ITEM_SAME_DAY configured twice"),
    (lambda d: d["internet_policies"][0].update(followup_window_days=0), r"internet_policies\[0\]\.followup_window_days"),
    (lambda d: d["internet_policies"][0].update(admdvs="999999"), r"internet_policies\[0\]\.admdvs"),
    (lambda d: d["internet_provinces"][2]["remote_coverage"].update(fee_share_bp=10001),
     r"internet_provinces\[2\]\.remote_coverage\.fee_share_bp"),
    (lambda d: d["internet_provinces"][3]["remote_coverage"]["ratio_by_region_bp"].update({"522600": 9000}),
     r"internet_provinces\[3\]\.remote_coverage\.ratio_by_region_bp\.522600"),
    (lambda d: d["internet_provinces"][0].update(province="3"), r"internet_provinces\[0\]\.province"),
    (lambda d: d["internet_agreements"][0].update(valid_to="2025-12-31"), r"internet_agreements\[0\]\.valid_to: before"),
    (lambda d: d["internet_agreements"][1].update(internet_code="H31010100001"), r"internet_agreements\[1\]\.internet_code"),
    (lambda d: d["internet_agreements"][2].update(status="paused"), r"internet_agreements\[2\]\.status"),
    (lambda d: d["internet_agreements"][3].update(visit_types=["pharmacy", "dental"]), r"internet_agreements\[3\]\.visit_types"),
    (lambda d: d["internet_provinces"][0].update(export_deadline="6am"), r"internet_provinces\[0\]\.export_deadline"),
    (lambda d: d["internet_defaults"].update(online_item_kinds="drug"), r"internet_defaults\.online_item_kinds"),
    (lambda d: d["internet_defaults"].update(online_ecert_required="yes"), r"internet_defaults\.online_ecert_required"),
    (lambda d: d["internet_defaults"].update(followup_diag_prefixes=["e11"]), r"internet_defaults\.followup_diag_prefixes\[0\]"),
])
def test_a_bad_internet_section_names_its_path(change, path):
    with pytest.raises(ReferenceSectionError, match=path):
        _sections(change)


def test_used_nonces_are_forgotten_only_after_their_expiry(tmp_path):
    from medsettle.ledger.storage.internet_state import InternetStateStore, InternetWrite
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    store = SqliteLedgerStore(tmp_path / "n.db")
    state = InternetStateStore(store.writer_connection())
    state.write(InternetWrite(nonces=[("a" * 32, 1, 100), ("b" * 32, 1, 200)]))
    state.prune_nonces(150)
    assert (state.nonce_seen("a" * 32), state.nonce_seen("b" * 32)) == (False, True)
    store.close()


def test_the_export_deadline_is_the_provinces_rule_for_each_of_its_regions():
    from medsettle.ledger.supervision.deadlines import deadlines

    internet = _sections(lambda d: None)
    due = deadlines(internet, ["440100", "350100", "220100", "350100"], dt.date(2026, 10, 31))
    assert [(d.admdvs, d.due.isoformat()) for d in due] == [
        ("220100", "2026-11-01T06:00:00+08:00"), ("350100", "2026-11-01T06:00:00+08:00")]  # Jilin, Fujian
    assert not due[0].late_at(due[0].due) and due[0].late_at(due[0].due + dt.timedelta(seconds=1))


@given(st.text(min_size=1, max_size=40).filter(lambda text: not text.isascii()), st.integers(0, 2))
def test_a_token_with_text_outside_ascii_in_any_part_is_refused_as_an_ecert_error(odd, part):
    # Not a TypeError from compare_digest, nor a UnicodeEncodeError from a lone surrogate:
    # the writer answers EcertError as FIELD_INVALID naming ecert_token.
    parts = ecert.issue(KEY, "P1", NOW).split(".")
    parts[part] = odd
    with pytest.raises(ecert.EcertError, match="ASCII"):
        ecert.verify(KEY, ".".join(parts), NOW)


_LAYERS = ("everywhere", "province 44", "region 440300")


@settings(max_examples=60)
@given(st.dictionaries(st.tuples(st.sampled_from(list(AuditRule)), st.sampled_from(_LAYERS)),
                       st.sampled_from(["flag", "refuse"]), max_size=15))
def test_an_audit_rule_is_the_regions_else_its_provinces_else_every_regions(layered):
    """Audit rules are layered as the internet policy: Shenzhen (440300) has
    its own, Guangzhou (440100) its province's, Shijiazhuang (130100) only
    the rules for every region."""
    def rules(doc):  # type: ignore[no-untyped-def]
        doc["audit_rules"] = []
        for (rule, layer), action in layered.items():
            record = {"rule": rule.value, "action": action}
            if layer == "province 44":
                record["province"] = "44"
            elif layer == "region 440300":
                record["admdvs"] = "440300"
            doc["audit_rules"].append(record)

    internet = _sections(rules)
    for admdvs, layers in (("440300", _LAYERS[::-1]), ("440100", _LAYERS[1::-1]), ("130100", _LAYERS[:1])):
        expected = {}
        for rule in AuditRule:
            action = next((layered[(rule, layer)] for layer in layers if (rule, layer) in layered), None)
            if action is not None:
                expected[rule] = AuditAction(action)
        in_force = internet.audit_rules(admdvs)
        assert {config.rule: config.action for config in in_force} == expected
        assert [config.rule for config in in_force] == [rule for rule in AuditRule if rule in expected]


@pytest.mark.parametrize(("record", "path"), [
    ({"province": "4"}, r"audit_rules\[8\]\.province: must be a 2-digit"),
    ({"province": "99"}, r"audit_rules\[8\]\.province: no region of the document is in province 99"),
    ({"province": "44", "admdvs": "440100"}, r"audit_rules\[8\]: a rule is for one region .* not both"),
])
def test_a_bad_province_audit_rule_names_its_path(record, path):
    with pytest.raises(ReferenceSectionError, match=path):
        _sections(lambda d: d["audit_rules"].append({"rule": "VISITS_PER_DAY", "action": "flag", **record}))


def test_a_province_configures_a_rule_once():
    twice = {"rule": "VISITS_PER_DAY", "action": "flag", "province": "44"}
    with pytest.raises(ReferenceSectionError, match=r"audit_rules\[9\]\.rule: VISITS_PER_DAY configured twice for province 44"):
        _sections(lambda d: d["audit_rules"].extend([dict(twice), dict(twice)]))


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["A1", "A2", "A3", "B1"]), st.sampled_from(["service", "drug"])),
                min_size=0, max_size=6),
       st.frozensets(st.sampled_from(["A1", "A2", "A3", "B1"])))
def test_a_duplicate_item_is_the_first_line_of_a_kind_billed_before_that_day_or_in_the_bill(lines, seen):
    priced = [(FeeLine(str(i), code, 1, 100), CatalogueItem(code, code, Category.A, item_kind=kind))
              for i, (code, kind) in enumerate(lines)]
    bill = Bill("M1", "H1", "P1", 310, "440100", VisitType.OUTPATIENT, tuple(line for line, _ in priced))
    config = AuditRuleConfig(AuditRule.DUP_ITEM_SAME_DAY, AuditAction.FLAG, item_kinds=frozenset({"service"}))
    found = evaluate((config,), bill, priced, DayActivity(0, seen), True)
    earlier: set[str] = set(seen)
    expected = None
    for i, (code, kind) in enumerate(lines):
        if kind == "service":
            if code in earlier:
                expected = f"fee_lines[{i}].hilist_code"
                break
            earlier.add(code)
    assert [f.field for f in found] == ([expected] if expected else [])

"""The pure "Internet+" rules: e-cert tokens, follow-up eligibility, the
fee-share coverage, the quota decision, the audit rules, and the reference
sections' validation."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger import ecert
from medsettle.ledger.errors import Refused
from medsettle.ledger.money import BASIS_POINTS
from medsettle.ledger.reference.internet import (
    AuditAction, AuditRule, AuditRuleConfig, HostQuota, OnQuotaReached, RegionInternetPolicy,
    ReferenceSectionError, parse_internet_sections,
)
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.reference.models import CatalogueItem, Category
from medsettle.ledger.settlement.internet import _share_item, check_followup
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.quota import QuotaDecision, quota_decision
from medsettle.ledger.settlement.split import split_line
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


@given(st.integers(0, BASIS_POINTS), st.integers(0, BASIS_POINTS), st.integers(1, 1000), st.integers(1, 10**6))
def test_fee_share_recognises_at_most_the_share_and_keeps_the_line_whole(share_bp, selfpay_bp, cnt, price):
    item = CatalogueItem("S0101", "remote", Category.B if selfpay_bp else Category.A, selfpay_bp, None, "remote_consultation")
    shared = _share_item(item, share_bp)
    line = split_line(FeeLine("1", "S0101", cnt, price), shared)
    amount = cnt * price
    assert line.inscp_scp_amt_fen + line.preselfpay_amt_fen == amount
    # recognised: the share of what the item itself recognises, to a rounding of one fen per 10,000
    ideal = amount * share_bp * (BASIS_POINTS - selfpay_bp) / BASIS_POINTS**2
    assert abs(line.inscp_scp_amt_fen - ideal) <= amount / BASIS_POINTS + 1


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


def _sections(change) -> None:
    doc = sample_document()
    change(doc)
    parse_internet_sections(doc, {r["admdvs"] for r in doc["regions"]},
                            {i["code"]: i["kind"] for i in doc["institutions"]},
                            {i["code"] for i in doc["catalogue"]["national"]})


@pytest.mark.parametrize(("change", "path"), [
    (lambda d: d["host_quotas"][0].update(host_code="H44010100901"), r"host_quotas\[0\]\.host_code"),
    (lambda d: d["host_quotas"][1].update(on_reach="panic"), r"host_quotas\[1\]\.on_reach"),
    (lambda d: d["host_quotas"].append(dict(d["host_quotas"][0])), r"host_quotas\[4\]: a second quota"),
    (lambda d: d["audit_rules"][0].update(rule="GUESS"), r"audit_rules\[0\]\.rule"),
    (lambda d: d["audit_rules"][1]["max_cnt_by_item"].update(NOPE=3), r"audit_rules\[1\]\.max_cnt_by_item\.NOPE"),
    (lambda d: d["audit_rules"].append(dict(d["audit_rules"][0])), r"audit_rules\[7\]\.rule: DUP_ITEM_SAME_DAY configured twice"),
    (lambda d: d["internet_policies"][0].update(followup_window_days=0), r"internet_policies\[0\]\.followup_window_days"),
    (lambda d: d["internet_policies"][0].update(admdvs="999999"), r"internet_policies\[0\]\.admdvs"),
    (lambda d: d["internet_policies"][1]["remote_coverage"].update(fee_share_bp=10001), r"remote_coverage\.fee_share_bp"),
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

"""The "Internet+" rules of docs/internet-rules.md through a real server and
channel, each allowed and refused: online scope, delivery fee in cash,
identity (e-insurance certificate, Jiangsu's insured-here rule), regional
payment (Fujian, Guizhou, Shanghai), and a reference document without the
new sections behaving as before. Rules are data: the shipped sample, or a
copy changed by the test."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.ledger import ecert
from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.money import share_bp
from medsettle.v1 import settlement_pb2 as pb
from tests.conftest import make_bill
from tests.service.test_internet import (  # noqa: F401  serve_with: a fixture
    FJ_PSN, GY_PSN, GZ_INTERNET, KEY, QDN_PSN, SH_INTERNET, SH_PSN, followup, pharmacy_sale, refusal, serve_with,
)
from tests.service.test_settle import assert_identities

NJ_PSN = "32010000000000000001"  # Nanjing employee
QN_PSN = "52270000000000000001"  # Qiannan resident
NJ_INTERNET = "H32010100901"


def _rule(refused: Any) -> tuple[str, str, str]:
    return refused.reason, refused.metadata.get("rule", ""), refused.field_violations[0][0]


# ---- 2. online care: consultation fees and drugs ----------------------------------
def test_an_online_followup_bills_consultation_and_drugs_but_not_a_ct_scan(client):
    assert client.settle(followup(lines=[("S0011", 1, 2500), ("XA0102", 2, 1500)])).setl_id
    refused = refusal(lambda: client.settle(followup(lines=[("S0011", 1, 2500), ("S0002", 1, 30000)])))
    assert _rule(refused) == ("RULE_REFUSED", "ONLINE_SCOPE", "fee_lines[1].hilist_code")
    assert "S0002" in refused.message


def test_a_region_that_allows_more_online_settles_it(serve_with):
    def allow_services(doc):
        next(p for p in doc["internet_policies"] if p["admdvs"] == "440100")["online_item_kinds"] = [
            "consultation", "drug", "service"]
        next(a for a in doc["internet_agreements"] if a["internet_code"] == GZ_INTERNET)["item_kinds"].append("service")

    _, client = serve_with(allow_services)
    r = client.settle(followup(lines=[("S0011", 1, 2500), ("S0002", 1, 30000)]))
    assert r.setl_id and r.medfee_sumamt_fen == 32500


# ---- 3. the delivery fee is always cash --------------------------------------------
def test_the_delivery_fee_is_paid_in_cash_even_with_the_personal_account(client):
    r = client.settle(followup(delivery_fee_fen=800))  # the person has 5,234 yuan and uses the account
    assert_identities(r)
    assert r.psn_cash_pay_fen == 800 and r.acct_pay_fen == r.psn_part_amt_fen - 800 > 0
    without = client.pre_settle(followup())
    assert without.psn_cash_pay_fen == 0  # the rest of the person's part the account pays


# ---- 4. identity ---------------------------------------------------------------------
def _by_certificate(request: pb.SettleRequest, clock: Any) -> pb.SettleRequest:
    request.ecert_token = ecert.issue(KEY, request.psn_no, clock.now())
    request.psn_no = ""
    return request


def test_jiangsu_settles_online_only_for_persons_insured_there_with_the_certificate(serve_with, clock):
    _, client = serve_with(key=KEY)
    elsewhere = followup(code=NJ_INTERNET)  # a Guangzhou employee
    assert _rule(refusal(lambda: client.settle(elsewhere))) == (
        "RULE_REFUSED", "ONLINE_LOCAL_INSURED_ONLY", "insuplc_admdvs")
    bare = followup(code=NJ_INTERNET, psn_no=NJ_PSN, insuplc="320100")
    assert _rule(refusal(lambda: client.settle(bare))) == ("RULE_REFUSED", "ECERT_REQUIRED", "ecert_token")
    r = client.settle(_by_certificate(followup(code=NJ_INTERNET, psn_no=NJ_PSN, insuplc="320100"), clock))
    assert r.psn_no == NJ_PSN and r.setl_id
    # Guangzhou requires neither: a bare psn_no of a person insured elsewhere settles there
    assert client.settle(followup(psn_no=SH_PSN, insuplc="310100")).setl_id


# ---- 6. regional payment ---------------------------------------------------------------
def test_fujian_pays_30_percent_of_the_schedule_even_before_the_deductible_is_met(client):
    # the Fuzhou employee has used none of the 800-yuan deductible: the old reading paid 0 here
    r = client.settle(make_bill(code="H35010100001", psn_no=FJ_PSN, insuplc="350100", lines=[("S0101", 1, 20000)]))
    assert_identities(r)
    assert (r.hifp_pay_fen, r.act_pay_dedc_fen) == (6000, 0)
    above = client.pre_settle(make_bill(code="H35010100001", psn_no=FJ_PSN, insuplc="350100",
                                        lines=[("S0101", 1, 70000)]))
    assert (above.overlmt_selfpay_fen, above.hifp_pay_fen) == (10000, 18000)  # 30 % of the schedule's 600 yuan
    # elsewhere the same consultation goes through the deductible and the ratio as catalogued
    gz = client.pre_settle(make_bill(lines=[("S0101", 1, 20000)]))
    assert gz.act_pay_dedc_fen == 10000 and gz.hifp_pay_fen == share_bp(10000, 8000)


def test_guizhou_pays_telemedicine_by_the_patients_poverty_county_not_the_place_of_service(client):
    at_guiyang = "H52010100001"
    for psn_no, insuplc, ratio_bp in ((QDN_PSN, "522600", 8500), (QN_PSN, "522700", 7000)):
        r = client.settle(make_bill(code=at_guiyang, psn_no=psn_no, insuplc=insuplc, insutype=390,
                                    lines=[("S0102", 1, 20000), ("XA0101", 1, 2000)], acct=False))
        assert_identities(r)
        # the remote line at the county's ratio, outside the deductible; the drug goes to the deductible
        assert r.hifp_pay_fen == share_bp(20000, ratio_bp) and r.act_pay_dedc_fen == 2000, insuplc
    # Guiyang is no designated poverty county: its insured pay the ordinary terms (deductible first)
    gy = client.settle(make_bill(code=at_guiyang, psn_no=GY_PSN, insuplc="520100", lines=[("S0102", 1, 20000)]))
    assert (gy.act_pay_dedc_fen, gy.hifp_pay_fen) == (20000, 0)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([("H35010100001", FJ_PSN, "350100", 310, "S0101", 60000, 3000),
                        ("H52010100001", QDN_PSN, "522600", 390, "S0102", 30000, 8500),
                        ("H52010100001", QN_PSN, "522700", 390, "S0101", 60000, 7000)]),
       st.integers(1, 3), st.integers(1, 90000))
def test_the_remote_share_is_of_the_schedule_price_for_any_fee(client, case, cnt, price):
    code, psn_no, insuplc, insutype, item, cap, bp = case
    r = client.pre_settle(make_bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype,
                                    lines=[(item, cnt, price)], acct=False))
    assert_identities(r)
    assert r.hifp_pay_fen == share_bp(cnt * min(price, cap), bp)
    assert r.act_pay_dedc_fen == 0


def test_shanghai_accepts_an_offline_record_of_two_calendar_months_and_refuses_without_one(client, clock):
    no_record = followup(code=SH_INTERNET, psn_no=SH_PSN, insuplc="310100", prior="2026-09-20")
    assert _rule(refusal(lambda: client.settle(no_record))) == (
        "RULE_REFUSED", "FOLLOWUP_WITHOUT_PRIOR_VISIT", "prior_offline_diag_date")
    clock.set(dt.datetime(2026, 8, 15, 9, 0, tzinfo=CHINA_TZ))
    offline = make_bill(code="H31010100001", psn_no=SH_PSN, insuplc="310100", lines=[("XA0102", 1, 1500)])
    offline.diag_code = "E11.2"
    client.settle(offline)
    clock.set(dt.datetime(2026, 10, 15, 9, 0, tzinfo=CHINA_TZ))
    r = client.settle(followup(code=SH_INTERNET, psn_no=SH_PSN, insuplc="310100", prior="2026-08-15"))
    assert r.setl_id and "FOLLOWUP_WITHOUT_PRIOR_VISIT" not in r.audit_flags
    too_old = followup(code=SH_INTERNET, psn_no=SH_PSN, insuplc="310100", prior="2026-08-14")
    assert _rule(refusal(lambda: client.settle(too_old))) == (
        "RULE_REFUSED", "FOLLOWUP_WINDOW", "prior_offline_diag_date")


# ---- a reference document without the new sections ----------------------------------
NEW_POLICY_KEYS = ("followup_window_months", "online_item_kinds", "online_ecert_required", "online_local_insured_only",
                   "agreement_required", "rx_record_required", "rx_default_valid_days", "rx_max_valid_days",
                   "export_deadline")


def strip_new_sections(doc: dict[str, Any]) -> None:
    """The sample as a document written before these rules: no province layer,
    no agreements, no new policy keys, no prescription-only flags."""
    for section in ("internet_provinces", "internet_agreements"):
        doc.pop(section, None)
    for policy in [doc["internet_defaults"], *doc["internet_policies"]]:
        for key in NEW_POLICY_KEYS:
            policy.pop(key, None)
    for item in doc["catalogue"]["national"]:
        item.pop("rx_only", None)
    doc["audit_rules"] = [r for r in doc["audit_rules"]
                          if not (r["rule"] == "FOLLOWUP_WITHOUT_PRIOR_VISIT" and r.get("admdvs") == "310100")]


def test_a_document_without_the_new_sections_settles_as_before(serve_with):
    _, client = serve_with(strip_new_sections)
    assert client.settle(followup(lines=[("S0011", 1, 2500), ("S0002", 1, 30000)])).setl_id  # any item online
    assert client.settle(followup(code=NJ_INTERNET)).setl_id  # no insured-here rule, no certificate needed
    shanghai = client.settle(followup(code=SH_INTERNET, psn_no=SH_PSN, insuplc="310100", prior="2026-05-01"))
    assert "FOLLOWUP_WITHOUT_PRIOR_VISIT" in shanghai.audit_flags  # the default 180 days, only flagged
    fujian = client.settle(make_bill(code="H35010100001", psn_no=FJ_PSN, insuplc="350100", lines=[("S0101", 1, 20000)]))
    assert fujian.hifp_pay_fen == 0  # no remote coverage: the deductible absorbs it
    invented = pharmacy_sale("RX-NEVER-ISSUED")  # no record needed, no prescription-only flag: filled once
    assert client.settle(invented).clr_type == pb.CLR_TYPE_PHARMACY
    assert refusal(lambda: client.settle(pharmacy_sale("RX-NEVER-ISSUED", code="P44010100001"))).metadata["rule"] == (
        "RX_ALREADY_FILLED")
    assert client.settle(make_bill(code="P44030100001", visit=pb.VISIT_TYPE_PHARMACY, lines=[("XA0101", 1, 2000)])).setl_id

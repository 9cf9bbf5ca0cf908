""""Internet+" care through a real server and channel: internet follow-ups,
regional coverage, host quotas, prescription circulation, the e-insurance
certificate, the real-time audit rules. Each rule is configured in the
reference document (the shipped sample, or a copy changed by the test)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any, Callable, Iterator

import grpc
import pytest

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger import ecert
from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.money import share_bp
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.v1 import settlement_pb2 as pb
from tests.conftest import SETTLE_AT, ServerThread, make_bill
from tests.service.test_settle import assert_identities, assert_ledger_sound, balances

GZ_PSN = "44010000000000000001"  # Guangzhou employee
SH_PSN = "31010000000000000001"  # Shanghai employee
FJ_PSN = "35010000000000000001"  # Fuzhou employee
GY_PSN = "52010000000000000001"  # Guiyang employee
QDN_PSN = "52260000000000000001"  # Qiandongnan resident
GZ_INTERNET = "H44010100901"  # hosted by H44010100001
SH_INTERNET = "H31010100901"  # hosted by H31010100001
KEY = bytes(range(32))


def followup(code: str = GZ_INTERNET, psn_no: str = GZ_PSN, insuplc: str = "440100", diag: str = "E11.9",
             prior: str = "2026-09-20", lines: list[tuple[str, int, int]] | None = None, **fields: Any) -> pb.SettleRequest:
    request = make_bill(code=code, psn_no=psn_no, insuplc=insuplc, visit=pb.VISIT_TYPE_INTERNET_FOLLOWUP,
                        lines=lines or [("S0011", 1, 2500), ("XA0102", 2, 1500)])
    request.diag_code = diag
    request.prior_offline_diag_date = prior
    for name, value in fields.items():
        setattr(request, name, value)
    return request


RX_ITEMS = [("XA0102", 2), ("XB0201", 1)]  # what pharmacy_sale sells


def issuing(rx_id: str, items: list[tuple[str, int]] | None = None, valid_days: int = 0, **fields: Any) -> pb.SettleRequest:
    """A Guangzhou internet follow-up that issues an e-prescription (by default for what pharmacy_sale sells)."""
    request = followup(**fields)
    request.prescription.CopyFrom(pb.Prescription(
        rx_id=rx_id, prescriber_id="DR0001", valid_days=valid_days,
        items=[pb.PrescribedItem(hilist_code=code, cnt=cnt) for code, cnt in (items or RX_ITEMS)]))
    return request


def pharmacy_sale(rx_id: str, prescriber: str = GZ_INTERNET, code: str = "P44030100001", **fields: Any) -> pb.SettleRequest:
    request = make_bill(code=code, visit=pb.VISIT_TYPE_PHARMACY, lines=[("XA0102", 2, 1500), ("XB0201", 1, 3500)], **fields)
    request.rx_id = rx_id
    request.prescribing_fixmedins_code = prescriber
    return request


def refusal(call: Callable[[], Any]) -> CallRefused:
    with pytest.raises(CallRefused) as refused:
        call()
    return refused.value


def stored(server: ServerThread, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of the server's ledger, on either backend (`?` marks)."""
    from medsettle.ledger.storage.backends import connect_read_only

    conn = connect_read_only(server.db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db_path(ledger_db: str) -> str:
    """The tests on the shared server fixture run on each backend (serve_with's stay on SQLite files)."""
    return ledger_db


@pytest.fixture
def serve_with(tmp_path, clock, monkeypatch) -> Iterator[Callable[..., tuple[ServerThread, SettlementClient]]]:
    """Starts a server whose reference document is the sample changed by
    `change(doc)`, and with an e-cert signing key when `key` is given."""
    started: list[tuple[ServerThread, SettlementClient]] = []

    def start(change: Callable[[dict[str, Any]], None] = lambda doc: None, key: bytes | None = None):
        if key is not None:
            monkeypatch.setenv(ecert.KEY_ENV, key.hex())
        doc = sample_document()
        change(doc)
        db_path = tmp_path / f"ledger-{len(started)}.db"
        _, persons = parse_document(doc)
        store = SqliteLedgerStore(db_path)
        store.save_reference(json.dumps(doc, ensure_ascii=False), persons, SETTLE_AT)
        store.close()
        server = ServerThread(db_path, clock).start()
        client = SettlementClient(server.target, token=server.operator_token, tokens=server.tokens,
                                  deadline_s=10.0, retries=0)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


def _policy(doc: dict[str, Any], admdvs: str, insutype: int) -> dict[str, Any]:
    return next(p for p in doc["policies"] if p["admdvs"] == admdvs and p["insutype"] == insutype)


# ---- 1. internet-hospital follow-ups ------------------------------------------
def test_followup_is_an_outpatient_visit_and_the_delivery_fee_is_self_paid(client, server):
    r = client.settle(followup(delivery_fee_fen=800))
    assert_identities(r)
    assert r.clr_type == pb.CLR_TYPE_OUTPATIENT
    # the delivery fee is never covered: it is in the fully self-paid part, not in any line
    assert r.fulamt_ownpay_amt_fen == 800 + sum(ls.fulamt_ownpay_amt_fen for ls in r.line_splits)
    assert r.medfee_sumamt_fen == 2500 + 3000 + 800
    # the follow-up is priced as a general outpatient visit: the same split as at the host hospital
    offline = client.pre_settle(make_bill(code="H44010100001", lines=[("S0011", 1, 2500), ("XA0102", 2, 1500)]))
    assert [ls.inscp_scp_amt_fen for ls in r.line_splits] == [ls.inscp_scp_amt_fen for ls in offline.line_splits]
    assert_ledger_sound(server)


def test_followup_without_its_facts_is_invalid_and_names_the_fields(client):
    refused = refusal(lambda: client.settle(followup(diag="", prior="")))
    assert refused.reason == "FIELD_INVALID"
    assert [f for f, _ in refused.field_violations] == ["diag_code", "prior_offline_diag_date"]


@pytest.mark.parametrize(("prior", "code", "psn_no", "insuplc", "outcome"), [
    ("2026-08-01", GZ_INTERNET, GZ_PSN, "440100", None),  # 75 days: Guangzhou allows 90
    ("2026-08-01", SH_INTERNET, SH_PSN, "310100", "FOLLOWUP_WINDOW"),  # Shanghai allows two calendar months
    ("2026-10-16", GZ_INTERNET, GZ_PSN, "440100", "FOLLOWUP_PRIOR_DIAGNOSIS"),  # after the visit
])
def test_followup_window_is_the_treatment_places(client, prior, code, psn_no, insuplc, outcome):
    request = followup(code=code, psn_no=psn_no, insuplc=insuplc, prior=prior)
    if outcome is None:
        assert client.settle(request).setl_id
        return
    refused = refusal(lambda: client.settle(request))
    assert (refused.code.name, refused.reason, refused.metadata["rule"]) == ("FAILED_PRECONDITION", "RULE_REFUSED", outcome)
    assert outcome in refused.message and refused.field_violations[0][0] == "prior_offline_diag_date"
    assert refusal(lambda: client.get(code, msgid=request.msgid)).reason == "SETTLEMENT_NOT_FOUND"


def test_no_online_first_diagnosis_of_a_disease_outside_the_chronic_list(client):
    refused = refusal(lambda: client.settle(followup(diag="S52.5")))  # a fracture: not a follow-up online
    assert refused.metadata["rule"] == "FOLLOWUP_DISEASE" and refused.field_violations[0][0] == "diag_code"


def test_only_internet_hospitals_settle_followups(client):
    refused = refusal(lambda: client.settle(followup(code="H44010100001")))
    assert refused.reason == "VISIT_NOT_ALLOWED"


# ---- 4. regional policy as data ------------------------------------------------
def test_fujian_does_not_cover_the_online_visit_but_drugs_follow_offline_policy(client):
    online = client.settle(followup(code="H35010100901", psn_no=FJ_PSN, insuplc="350100"))
    offline = client.pre_settle(make_bill(code="H35010100001", psn_no=FJ_PSN, insuplc="350100",
                                          lines=[("S0011", 1, 2500), ("XA0102", 2, 1500)]))
    visit, drug = online.line_splits
    assert (visit.fulamt_ownpay_amt_fen, visit.inscp_scp_amt_fen) == (2500, 0)  # the consultation: self-paid
    assert drug.inscp_scp_amt_fen == offline.line_splits[1].inscp_scp_amt_fen == 3000  # the drug: as offline
    assert offline.line_splits[0].inscp_scp_amt_fen == 2500


def test_a_telemedicine_ratio_outside_the_provinces_range_is_refused_when_loaded():
    doc = sample_document()
    policy = next(p for p in doc["internet_provinces"] if p["province"] == "52")
    policy["remote_coverage"]["ratio_by_region_bp"]["522600"] = 9000
    with pytest.raises(ValueError, match=r"internet_provinces\[3\]\.remote_coverage\.ratio_by_region_bp\.522600"):
        parse_document(doc)


def test_personal_account_use_online_is_the_insurance_places_choice(client):
    # Guiyang does not let the personal account pay an online visit (sample data), Guangzhou does
    gy = client.settle(followup(psn_no=GY_PSN, insuplc="520100"))
    gz = client.settle(followup())
    assert gy.acct_pay_fen == 0 and gy.psn_cash_pay_fen == gy.psn_part_amt_fen > 0
    assert gz.acct_pay_fen == gz.psn_part_amt_fen > 0


# ---- 2. host hospital and shared quota -------------------------------------------
def _small_quota(on_reach: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        quota = next(q for q in doc["host_quotas"] if q["host_code"] == "H44010100001")
        quota.update(quota_fen=150000, on_reach=on_reach)
    return change


BIG = [("S0004", 1, 200000)]  # a class-B operation: the fund pays well over 100,000 fen


def test_internet_hospital_draws_on_the_host_quota_and_reaching_it_warns(serve_with):
    server, client = serve_with(_small_quota("warn"))
    first = client.settle(followup(lines=[("S0011", 1, 2500), ("XB0303", 3, 18000)]))
    assert first.hifp_pay_fen > 0 and "QUOTA_REACHED" not in first.audit_flags
    second = client.settle(make_bill(code="H44010100001", lines=BIG))  # the host's own visit counts too
    assert "QUOTA_REACHED" in second.audit_flags
    used = stored(server, "SELECT used_fen FROM host_quota_use WHERE host_code = 'H44010100001' AND year = 2026")
    assert used == [(first.hifp_pay_fen + second.hifp_pay_fen,)]
    flags = stored(server, "SELECT setl_id, rule FROM audit_flags WHERE rule = 'QUOTA_REACHED'")
    assert flags == [(second.setl_id, "QUOTA_REACHED")]


def test_reaching_a_refusing_quota_refuses_and_a_reversal_gives_the_quota_back(serve_with):
    server, client = serve_with(_small_quota("refuse"))
    first = client.settle(make_bill(code="H44010100001", lines=BIG))
    assert first.hifp_pay_fen <= 150000
    before = balances(server)
    refused = refusal(lambda: client.settle(followup(lines=[("XB0303", 5, 18000)])))
    assert (refused.reason, refused.metadata["rule"]) == ("RULE_REFUSED", "QUOTA_REACHED")
    assert balances(server) == before  # nothing written
    client.reverse("REV-Q1", "H44010100001", first.setl_id)
    assert client.settle(followup(lines=[("XB0303", 5, 18000)])).hifp_pay_fen > 0


# ---- 3. prescription circulation -------------------------------------------------------
def test_e_prescription_filled_at_a_pharmacy_elsewhere_is_a_pharmacy_sale_payable_to_the_pharmacy(client, server):
    visit = client.settle(issuing("RX-GZ-0001"))
    sale = client.settle(pharmacy_sale("RX-GZ-0001"))
    assert_identities(sale)
    assert (sale.clr_type, sale.pay_loc) == (pb.CLR_TYPE_PHARMACY, pb.PAY_LOC_IN_PROVINCE)
    b = balances(server)
    owed = sale.hifp_pay_fen + sale.acct_pay_fen
    assert owed > 0
    assert b[("440300", "payable:institution:P44030100001")] == -owed  # the pharmacy is paid, in its agency's book
    assert b[("440300", "receivable:agency:440100")] == owed
    assert b.get(("440100", f"payable:institution:{GZ_INTERNET}"), 0) == -(visit.hifp_pay_fen + visit.acct_pay_fen)
    fills = stored(server, "SELECT setl_id, prescribing_code, rx_id, hilist_code, cnt FROM rx_fill_items ORDER BY hilist_code")
    assert fills == [(sale.setl_id, GZ_INTERNET, "RX-GZ-0001", "XA0102", 2), (sale.setl_id, GZ_INTERNET, "RX-GZ-0001", "XB0201", 1)]
    assert_ledger_sound(server)


def test_a_prescription_is_filled_once_and_a_reversed_sale_frees_it(client):
    client.settle(issuing("RX-ONCE"))
    sale = client.settle(pharmacy_sale("RX-ONCE"))
    refused = refusal(lambda: client.settle(pharmacy_sale("RX-ONCE", code="P44010100001")))
    assert (refused.reason, refused.metadata["rule"], refused.field_violations[0][0]) == ("RULE_REFUSED", "RX_ALREADY_FILLED", "rx_id")
    client.reverse("REV-RX1", "P44030100001", sale.setl_id)
    assert client.settle(pharmacy_sale("RX-ONCE", code="P44010100001")).clr_type == pb.CLR_TYPE_PHARMACY


def test_a_prescription_filled_twice_in_one_stream_is_refused_the_second_time(client):
    client.settle(issuing("RX-STREAM"))
    answers = list(client.settle_stream([pharmacy_sale("RX-STREAM"), pharmacy_sale("RX-STREAM")]))
    assert answers[0].status.code == 0 and answers[0].result.setl_id
    assert answers[1].status.reason == "RULE_REFUSED" and "RX_ALREADY_FILLED" in answers[1].status.message


@pytest.mark.parametrize("prescriber", ["H99999999999", "P44010100001"])
def test_the_prescriber_must_be_a_known_hospital(client, prescriber):
    refused = refusal(lambda: client.settle(pharmacy_sale("RX-WHO", prescriber=prescriber)))
    assert (refused.reason, refused.field_violations[0][0]) == ("UNKNOWN_INSTITUTION", "prescribing_fixmedins_code")


# ---- 5. e-insurance certificate ------------------------------------------------
def _by_token(token: str, **fields: Any) -> pb.SettleRequest:
    request = make_bill(**fields)
    request.psn_no = ""
    request.ecert_token = token
    return request


def test_a_certificate_identifies_the_person_once_and_never_reaches_logs_or_storage(serve_with, clock, capfd):
    server, client = serve_with(key=KEY)
    token = ecert.issue(KEY, GZ_PSN, clock.now())
    request = _by_token(token)
    r = client.settle(request)
    assert r.psn_no == GZ_PSN and r.setl_id
    assert client.settle(request).setl_id == r.setl_id  # a retry of the same msgid is not a replay
    replay = _by_token(token)
    refused = refusal(lambda: client.settle(replay))
    assert (refused.reason, refused.metadata["rule"], refused.field_violations[0][0]) == ("RULE_REFUSED", "ECERT_REPLAY", "ecert_token")
    signature = token.rsplit(".", 1)[1]
    assert signature not in capfd.readouterr().err
    assert signature.encode() not in server.db_path.read_bytes()
    assert stored(server, "SELECT COUNT(*) FROM ecert_nonces") == [(1,)]


@pytest.mark.parametrize("case", ["expired", "tampered", "other key", "garbage"])
def test_a_bad_certificate_is_an_invalid_field(serve_with, clock, case):
    _, client = serve_with(key=KEY)
    token = ecert.issue(bytes(32) if case == "other key" else KEY, GZ_PSN, clock.now() - dt.timedelta(
        seconds=301 if case == "expired" else 0))
    if case == "tampered":
        payload = ecert._b64(json.dumps({"psn": SH_PSN, "iat": 1, "exp": 2, "nonce": "0" * 32}).encode())
        token = ".".join([token.split(".")[0], payload, token.split(".")[2]])
    if case == "garbage":
        token = "not-a-token"
    refused = refusal(lambda: client.settle(_by_token(token)))
    assert (refused.reason, [f for f, _ in refused.field_violations]) == ("FIELD_INVALID", ["ecert_token"])
    assert token not in refused.message and all(token not in d for _, d in refused.field_violations)


@pytest.mark.parametrize("extra", [1, 900_000])
def test_an_overlong_certificate_is_refused_as_invalid_argument(serve_with, clock, extra):
    server, client = serve_with(key=KEY)
    token = ecert.issue(KEY, GZ_PSN, clock.now())
    overlong = token + "A" * (ecert.MAX_TOKEN_CHARS - len(token) + extra)
    refused = refusal(lambda: client.settle(_by_token(overlong)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_INVALID")
    assert refused.field_violations == [("ecert_token", f"refused: longer than {ecert.MAX_TOKEN_CHARS} characters")]
    assert stored(server, "SELECT COUNT(*) FROM ecert_nonces") == [(0,)]


def test_without_a_signing_key_certificates_are_refused(client, clock):
    refused = refusal(lambda: client.settle(_by_token(ecert.issue(KEY, GZ_PSN, clock.now()))))
    assert refused.reason == "FIELD_INVALID" and "no signing key" in refused.field_violations[0][1]


# ---- 6. fund supervision -------------------------------------------------------------
def _flags(server: ServerThread, setl_id: str) -> list[tuple[str, str]]:
    return stored(server, "SELECT rule, field FROM audit_flags WHERE setl_id = ? ORDER BY flag_no", setl_id)


def test_duplicate_item_on_the_same_day_is_flagged_and_stored(client, server):
    first = client.settle(make_bill(lines=[("S0001", 1, 2500)]))
    assert first.audit_flags == []
    again = client.settle(make_bill(code="H44010100002", lines=[("S0001", 1, 2500)]))
    assert list(again.audit_flags) == ["DUP_ITEM_SAME_DAY"]
    assert _flags(server, again.setl_id) == [("DUP_ITEM_SAME_DAY", "fee_lines[0].hilist_code")]
    assert list(client.get("H44010100002", setl_id=again.setl_id).audit_flags) == ["DUP_ITEM_SAME_DAY"]


def test_quantity_limit_flags_in_guangzhou_and_refuses_in_shanghai(client, server):
    gz = client.settle(make_bill(lines=[("XB0303", 11, 100)]))
    assert list(gz.audit_flags) == ["QTY_ABOVE_LIMIT"]
    sh = make_bill(code="H31010100001", psn_no=SH_PSN, insuplc="310100", lines=[("XB0303", 6, 100)])
    refused = refusal(lambda: client.settle(sh))
    assert (refused.metadata["rule"], refused.field_violations[0][0]) == ("QTY_ABOVE_LIMIT", "fee_lines[0].cnt")


def test_drug_not_matching_the_diagnosis_is_flagged(client):
    request = make_bill(lines=[("XA0102", 1, 1500)])
    request.diag_code = "I10"  # hypertension; metformin is for diabetes (E11)
    assert list(client.settle(request).audit_flags) == ["DRUG_DIAG_MISMATCH"]
    request = make_bill(lines=[("XA0102", 1, 1500)])
    request.diag_code = "E11.9"
    assert list(client.settle(request).audit_flags) == []


def test_followup_without_a_prior_offline_visit_on_record_is_flagged(client, server):
    alone = client.settle(followup())
    assert "FOLLOWUP_WITHOUT_PRIOR_VISIT" in alone.audit_flags
    offline = make_bill(code="H44010100002", lines=[("XA0102", 1, 1500)], psn_no="44010000000000000002",
                        insuplc="440100", insutype=390)
    offline.diag_code = "E11.2"
    client.settle(offline)
    after = client.settle(followup(psn_no="44010000000000000002", insutype=390))
    assert "FOLLOWUP_WITHOUT_PRIOR_VISIT" not in after.audit_flags


def test_too_many_visits_per_day_flags_or_refuses_as_configured(serve_with, client):
    results = [client.settle(make_bill(lines=[("XA0101", 1, 100)])) for _ in range(6)]
    assert [list(r.audit_flags) for r in results] == [[]] * 5 + [["VISITS_PER_DAY"]]

    def refuse_third(doc):
        rule = next(r for r in doc["audit_rules"] if r["rule"] == "VISITS_PER_DAY" and "admdvs" not in r)
        rule.update(action="refuse", max_visits=2)

    server, strict = serve_with(refuse_third)
    for _ in range(2):
        strict.settle(make_bill(lines=[("XA0101", 1, 100)]))
    refused = refusal(lambda: strict.settle(make_bill(lines=[("XA0101", 1, 100)])))
    assert (refused.reason, refused.metadata["rule"]) == ("RULE_REFUSED", "VISITS_PER_DAY")
    assert stored(server, "SELECT COUNT(*) FROM settlements") == [(2,)]


def test_a_provinces_audit_rule_holds_in_its_regions_and_a_region_replaces_it(serve_with):
    """Guangdong (44) refuses a person's second visit of the day; Shenzhen
    (440300) only flags it; Hebei keeps the rule for every region (5, flag)."""
    def province_rules(doc):
        doc["audit_rules"] += [
            {"rule": "VISITS_PER_DAY", "action": "refuse", "province": "44", "max_visits": 1},
            {"rule": "VISITS_PER_DAY", "action": "flag", "admdvs": "440300", "max_visits": 1}]

    server, client = serve_with(province_rules)
    assert list(client.settle(make_bill(lines=[("XA0101", 1, 100)])).audit_flags) == []
    refused = refusal(lambda: client.settle(make_bill(code="H44010100002", lines=[("XA0101", 1, 100)])))
    assert (refused.reason, refused.metadata["rule"], refused.field_violations[0][0]) == (
        "RULE_REFUSED", "VISITS_PER_DAY", "psn_no")
    in_shenzhen = client.settle(make_bill(code="H44030100001", lines=[("XA0101", 1, 100)]))
    assert list(in_shenzhen.audit_flags) == ["VISITS_PER_DAY"]
    hebei = [client.settle(make_bill(code="H13010100001", psn_no="13010000000000000001", insuplc="130100",
                                     lines=[("XA0101", 1, 100)])) for _ in range(2)]
    assert [list(r.audit_flags) for r in hebei] == [[], []]
    assert stored(server, "SELECT COUNT(*) FROM settlements") == [(4,)]


def test_the_next_day_starts_a_new_count(client, clock):
    for _ in range(5):
        client.settle(make_bill(lines=[("XA0101", 1, 100)]))
    clock.set(dt.datetime(2026, 10, 16, 9, 0, tzinfo=CHINA_TZ))
    assert list(client.settle(make_bill(lines=[("XA0101", 1, 100)])).audit_flags) == []


def test_flags_are_listable_over_grpc_per_institution_and_day(client, server):
    client.settle(make_bill(lines=[("S0001", 1, 2500)]))
    dup = client.settle(make_bill(code="H44010100002", lines=[("S0001", 1, 2500)]))
    qty = client.settle(make_bill(lines=[("XB0303", 11, 100)]))
    everyone = [(f.setl_id, f.rule, f.field) for f in client.list_audit_flags("", "2026-10-15")]
    assert everyone == [(dup.setl_id, "DUP_ITEM_SAME_DAY", "fee_lines[0].hilist_code"),
                        (qty.setl_id, "QTY_ABOVE_LIMIT", "fee_lines[0].cnt")]
    assert [f.setl_id for f in client.list_audit_flags("H44010100002", "2026-10-15")] == [dup.setl_id]
    assert [f.setl_id for f in client.list_audit_flags("", "2026-10-15", limit=1)] == [dup.setl_id]
    assert list(client.list_audit_flags("", "2026-10-14")) == []
    refused = refusal(lambda: list(client.list_audit_flags("", "2026-1-15")))
    assert refused.reason == "FIELD_INVALID" and refused.field_violations[0][0] == "flag_day"


def test_pre_settle_returns_the_flags_and_stores_nothing(client, server):
    client.settle(make_bill(lines=[("S0001", 1, 2500)]))
    pre = client.pre_settle(make_bill(lines=[("S0001", 1, 2500)]))
    assert list(pre.audit_flags) == ["DUP_ITEM_SAME_DAY"] and pre.setl_id == ""
    assert stored(server, "SELECT COUNT(*) FROM audit_flags") == [(0,)]
    assert stored(server, "SELECT COUNT(*) FROM visit_log") == [(1,)]

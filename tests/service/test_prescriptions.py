"""E-prescriptions through a real server and channel: recorded with the visit
that issues them, matched by the pharmacy sale that fills them (person,
items, quantities left, validity), partial fills, reversals freeing what
they filled, prescription-only drugs."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.client.settlement_client import CallRefused
from medsettle.ledger.clock import CHINA_TZ
from medsettle.v1 import settlement_pb2 as pb
from tests.conftest import make_bill
from tests.service.test_internet import GZ_INTERNET, GZ_PSN, followup, issuing, refusal, stored

OTHER_PSN = "44010000000000000002"  # Guangzhou resident
PHARMACY = "P44030100001"



@pytest.fixture
def db_path(ledger_db: str) -> str:
    """Every test here runs on each backend (a SQLite file, a PostgreSQL database)."""
    return ledger_db

def sale(rx_id: str, lines: list[tuple[str, int]], psn_no: str = GZ_PSN, insutype: int = 310,
         prescriber: str = GZ_INTERNET, **fields: Any) -> pb.SettleRequest:
    request = make_bill(code=PHARMACY, psn_no=psn_no, insutype=insutype, visit=pb.VISIT_TYPE_PHARMACY,
                        lines=[(code, cnt, 1500) for code, cnt in lines], **fields)
    request.rx_id = rx_id
    request.prescribing_fixmedins_code = prescriber
    request.pharmacist_id = "PH0007"
    return request


def rule_of(refused: CallRefused) -> tuple[str, str, str]:
    return refused.reason, refused.metadata.get("rule", ""), refused.field_violations[0][0]


def test_a_prescription_is_recorded_with_its_contents_and_a_matching_sale_fills_it(client, server):
    visit = client.settle(issuing("RX-A", items=[("XA0102", 2), ("XB0201", 1)], valid_days=5))
    rows = stored(server, "SELECT prescribing_code, rx_id, setl_id, psn_no, prescriber_id, issued_day, valid_to, items "
                          "FROM prescriptions")
    assert rows == [(GZ_INTERNET, "RX-A", visit.setl_id, GZ_PSN, "DR0001", "2026-10-15", "2026-10-19",
                     json.dumps([["XA0102", 2], ["XB0201", 1]]))]
    filled = client.settle(sale("RX-A", [("XA0102", 2), ("XB0201", 1)]))
    assert filled.clr_type == pb.CLR_TYPE_PHARMACY
    assert stored(server, "SELECT hilist_code, cnt, pharmacist_id FROM rx_fill_items ORDER BY hilist_code") == [
        ("XA0102", 2, "PH0007"), ("XB0201", 1, "PH0007")]


def test_a_hospital_visit_issues_prescriptions_too_and_pre_settle_records_nothing(client, server):
    visit = make_bill(code="H44010100001")
    visit.prescription.CopyFrom(pb.Prescription(rx_id="RX-H", prescriber_id="DR0002",
                                                items=[pb.PrescribedItem(hilist_code="XA0102", cnt=1)]))
    client.pre_settle(visit)
    assert stored(server, "SELECT COUNT(*) FROM prescriptions") == [(0,)]
    client.settle(visit)
    assert client.settle(sale("RX-H", [("XA0102", 1)], prescriber="H44010100001")).setl_id


def test_an_invented_prescription_is_refused(client, server):
    refused = refusal(lambda: client.settle(sale("RX-NEVER", [("XA0102", 1)])))
    assert rule_of(refused) == ("RULE_REFUSED", "RX_UNKNOWN", "rx_id")
    assert stored(server, "SELECT COUNT(*) FROM settlements") == [(0,)]


def test_another_persons_prescription_is_refused(client):
    client.settle(issuing("RX-B"))
    refused = refusal(lambda: client.settle(sale("RX-B", [("XA0102", 1)], psn_no=OTHER_PSN, insutype=390)))
    assert rule_of(refused) == ("RULE_REFUSED", "RX_OTHER_PERSON", "psn_no")


def test_a_prescription_fills_up_to_its_last_valid_day_and_is_refused_after(client, clock):
    client.settle(issuing("RX-C", items=[("XA0102", 4)], valid_days=2))
    clock.set(dt.datetime(2026, 10, 16, 23, 0, tzinfo=CHINA_TZ))  # the second day
    assert client.settle(sale("RX-C", [("XA0102", 1)])).setl_id
    clock.set(dt.datetime(2026, 10, 17, 0, 5, tzinfo=CHINA_TZ))
    assert rule_of(refusal(lambda: client.settle(sale("RX-C", [("XA0102", 1)])))) == (
        "RULE_REFUSED", "RX_EXPIRED", "rx_id")


def test_partial_fills_leave_the_rest_and_a_reversal_frees_what_it_filled(client):
    client.settle(issuing("RX-D", items=[("XA0102", 4), ("XB0201", 1)]))
    first = client.settle(sale("RX-D", [("XA0102", 3)]))
    assert rule_of(refusal(lambda: client.settle(sale("RX-D", [("XA0102", 2)])))) == (
        "RULE_REFUSED", "RX_QUANTITY_EXCEEDED", "fee_lines[0].cnt")
    client.settle(sale("RX-D", [("XA0102", 1), ("XB0201", 1)]))
    assert rule_of(refusal(lambda: client.settle(sale("RX-D", [("XA0102", 1)])))) == (
        "RULE_REFUSED", "RX_ALREADY_FILLED", "rx_id")
    client.reverse("REV-D1", PHARMACY, first.setl_id)
    assert client.settle(sale("RX-D", [("XA0102", 3)])).setl_id


def test_an_item_not_on_the_prescription_is_refused(client):
    client.settle(issuing("RX-E", items=[("XA0102", 2)]))
    refused = refusal(lambda: client.settle(sale("RX-E", [("XA0102", 1), ("XB0201", 1)])))
    assert rule_of(refused) == ("RULE_REFUSED", "RX_ITEM_NOT_PRESCRIBED", "fee_lines[1].hilist_code")


def test_a_reversed_visit_voids_its_prescription(client):
    visit = client.settle(issuing("RX-F"))
    client.reverse("REV-F", GZ_INTERNET, visit.setl_id)
    assert rule_of(refusal(lambda: client.settle(sale("RX-F", [("XA0102", 1)])))) == (
        "RULE_REFUSED", "RX_VOID", "rx_id")


def test_a_visit_whose_prescription_was_dispensed_is_reversed_only_after_the_sales(client, server):
    """The drugs a pharmacy dispensed were paid against the visit: the visit
    is not reversed under a standing sale (nothing is written), the pharmacy
    reverses its sales when the drugs come back, then the visit's reversal
    voids the prescription, rest included."""
    visit = client.settle(issuing("RX-P", items=[("XA0102", 4)]))
    first = client.settle(sale("RX-P", [("XA0102", 1)]))
    second = client.settle(sale("RX-P", [("XA0102", 2)]))
    before = stored(server, "SELECT COUNT(*) FROM settlements")
    for _ in range(2):  # partly dispensed, then after one sale is reversed: still dispensed
        refused = refusal(lambda: client.reverse(f"REV-P-{_}", GZ_INTERNET, visit.setl_id))
        assert rule_of(refused) == ("RULE_REFUSED", "RX_DISPENSED", "setl_id")
        assert "RX-P" in refused.message
        if _ == 0:
            client.reverse("REV-P-S1", PHARMACY, first.setl_id)
    assert stored(server, "SELECT COUNT(*) FROM settlements") == [(before[0][0] + 1,)]  # the sale's reversal only
    assert stored(server, "SELECT voided_setl_id FROM prescriptions WHERE rx_id = 'RX-P'") == [(None,)]
    client.reverse("REV-P-S2", PHARMACY, second.setl_id)
    reversed_visit = client.reverse("REV-P-V", GZ_INTERNET, visit.setl_id)
    assert stored(server, "SELECT voided_setl_id FROM prescriptions WHERE rx_id = 'RX-P'") == [(reversed_visit.setl_id,)]
    assert rule_of(refusal(lambda: client.settle(sale("RX-P", [("XA0102", 1)])))) == ("RULE_REFUSED", "RX_VOID", "rx_id")


def test_prescription_only_drugs_need_a_prescription_at_a_pharmacy(client):
    without = make_bill(code=PHARMACY, visit=pb.VISIT_TYPE_PHARMACY, lines=[("XB0202", 1, 900), ("XA0101", 1, 2000)])
    assert rule_of(refusal(lambda: client.settle(without))) == ("RULE_REFUSED", "RX_REQUIRED", "fee_lines[1].hilist_code")
    otc = make_bill(code=PHARMACY, visit=pb.VISIT_TYPE_PHARMACY, lines=[("XB0202", 1, 900), ("XC0401", 1, 1200)])
    assert client.settle(otc).setl_id  # over the counter: no prescription needed
    # at a hospital the doctor prescribes in the visit itself
    assert client.settle(make_bill(lines=[("XA0101", 1, 2000)])).setl_id


def test_issuing_checks_the_id_the_items_and_the_validity(client):
    client.settle(issuing("RX-G"))
    assert rule_of(refusal(lambda: client.settle(issuing("RX-G")))) == ("RULE_REFUSED", "RX_ID_TAKEN", "prescription.rx_id")
    assert rule_of(refusal(lambda: client.settle(issuing("RX-H2", valid_days=31)))) == (
        "RULE_REFUSED", "RX_VALIDITY", "prescription.valid_days")
    refused = refusal(lambda: client.settle(issuing("RX-I", items=[("NOPE1", 1)])))
    assert (refused.reason, refused.field_violations[0][0]) == ("UNKNOWN_ITEM", "prescription.items[0].hilist_code")
    bad = issuing("RX-J", items=[("XA0102", 1), ("XA0102", 0)])
    refused = refusal(lambda: client.settle(bad))
    assert refused.reason == "FIELD_INVALID"
    assert [f for f, _ in refused.field_violations] == ["prescription.items[1].hilist_code", "prescription.items[1].cnt"]
    at_pharmacy = sale("RX-K", [("XA0102", 1)])
    at_pharmacy.prescription.CopyFrom(pb.Prescription(rx_id="RX-K", prescriber_id="X", items=[
        pb.PrescribedItem(hilist_code="XA0102", cnt=1)]))
    assert [f for f, _ in refusal(lambda: client.settle(at_pharmacy)).field_violations] == ["prescription"]


_example = itertools.count()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 6), st.lists(st.tuples(st.sampled_from(["fill", "reverse"]), st.integers(1, 4)), min_size=1,
                                   max_size=8))
def test_live_fills_never_exceed_the_prescription(client, server, prescribed, steps):
    n = next(_example)
    rx_id = f"RXQ{n}"
    client.settle(issuing(rx_id, items=[("XA0102", prescribed)], msgid=f"QI{n:05d}"))
    live: list[tuple[str, int]] = []  # (setl_id, cnt)
    for i, (op, cnt) in enumerate(steps):
        left = prescribed - sum(c for _, c in live)
        if op == "fill":
            try:
                r = client.settle(sale(rx_id, [("XA0102", cnt)], msgid=f"QS{n:05d}{i}"))
            except CallRefused as refused:
                assert cnt > left, refused.message
                assert refused.metadata["rule"] == ("RX_ALREADY_FILLED" if left == 0 else "RX_QUANTITY_EXCEEDED")
            else:
                assert cnt <= left
                live.append((r.setl_id, cnt))
        elif live:
            setl_id, _ = live.pop(0)
            client.reverse(f"QR{n:05d}{i}", PHARMACY, setl_id)
    filled = stored(server, "SELECT COALESCE(SUM(cnt), 0) FROM rx_fill_items WHERE rx_id = ? AND reversal_setl_id IS NULL",
                    rx_id)[0][0]
    assert filled == sum(c for _, c in live) <= prescribed


def test_fills_in_one_stream_see_each_other(client):
    client.settle(issuing("RX-S", items=[("XA0102", 3)]))
    answers = list(client.settle_stream([sale("RX-S", [("XA0102", 2)]), sale("RX-S", [("XA0102", 2)]),
                                         sale("RX-S", [("XA0102", 1)])]))
    assert [a.status.code == 0 for a in answers] == [True, False, True]
    assert "RX_QUANTITY_EXCEEDED" in answers[1].status.message


def test_followup_helper_without_prescription_records_none(client, server):
    client.settle(followup(rx_id="RX-LEGACY"))  # an id on the visit alone records no contents
    assert stored(server, "SELECT COUNT(*) FROM prescriptions") == [(0,)]
    assert rule_of(refusal(lambda: client.settle(sale("RX-LEGACY", [("XA0102", 1)])))) == (
        "RULE_REFUSED", "RX_UNKNOWN", "rx_id")


def test_prescriptions_agreements_and_payees_cross_the_writer_process(db_path, clock):
    """The default server settles in a writer child process: the prescription,
    its fill and the agreement's payee travel through it and back."""
    from medsettle.client.settlement_client import SettlementClient
    from tests.conftest import ServerThread

    server = ServerThread(db_path, clock, writer_process=True).start()
    try:
        with SettlementClient(server.target, token=server.operator_token, tokens=server.tokens,
                              deadline_s=30.0, retries=0) as client:
            visit = client.settle(issuing("RX-WP", items=[("XA0102", 2)]))
            assert visit.payee_code == GZ_INTERNET
            assert client.settle(sale("RX-WP", [("XA0102", 1)])).setl_id
            assert rule_of(refusal(lambda: client.settle(sale("RX-WP", [("XA0102", 2)])))) == (
                "RULE_REFUSED", "RX_QUANTITY_EXCEEDED", "fee_lines[0].cnt")
    finally:
        server.stop()

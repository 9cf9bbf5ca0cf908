"""SettleStream, the read APIs, health, reflection, grpcurl, and a random
workload after which every book balances."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medsettle.client.settlement_client import CallRefused
from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.v1 import settlement_pb2 as pb

PERSONS = [
    ("44010000000000000001", "440100", 310),
    ("44010000000000000002", "440100", 390),
    ("44030000000000000001", "440300", 310),
    ("44060000000000000001", "440600", 310),
    ("13010000000000000001", "130100", 310),
    ("13010000000000000002", "130100", 390),
    ("13020000000000000001", "130200", 310),
    ("31010000000000000001", "310100", 310),
]
HOSPITALS = ["H44010100001", "H44010100002", "H44030100001", "H44060100001", "H13010100001", "H13020100001", "H31010100001"]
ITEMS = [("S0001", 2800), ("XA0101", 2600), ("XB0201", 4200), ("XB0303", 17000), ("XC0401", 5000), ("S0002", 41000), ("C0001", 30000)]



@pytest.fixture
def db_path(ledger_db: str) -> str:
    """Every test here runs on each backend (a SQLite file, a PostgreSQL database)."""
    return ledger_db

def test_stream_of_1000_bills_answers_each_in_order(client, bill, server):
    requests = [bill(psn_no=PERSONS[i % 3][0], insuplc=PERSONS[i % 3][1], insutype=PERSONS[i % 3][2]) for i in range(1000)]
    requests[10].fee_lines[0].cnt = 0  # malformed: its own INVALID_ARGUMENT
    requests[20].psn_no = "99999999999999999999"  # unknown person
    requests[30] = requests[29]  # a duplicate: same result as #29
    responses = list(client.settle_stream(requests))
    assert [r.seq for r in responses] == list(range(1000))
    assert [r.msgid for r in responses] == [r.msgid for r in requests]
    codes = {i: r.status.code for i, r in enumerate(responses) if r.status.code != 0}
    assert codes == {10: grpc.StatusCode.INVALID_ARGUMENT.value[0], 20: grpc.StatusCode.INVALID_ARGUMENT.value[0]}
    assert [v.field for v in responses[10].status.field_violations] == ["fee_lines[0].cnt"]
    assert responses[20].status.reason == "UNKNOWN_PERSON"
    assert responses[30].result == responses[29].result
    stored = server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
    assert stored == 997
    b = server.service.store.book_balances()
    assert trial_balance_breaks(b) == [] and reciprocity_breaks(b) == []


def test_get_list_and_reconcile_totals(client, bill):
    settled = [client.settle(bill()) for _ in range(3)]
    client.reverse("REV-L1", "H44010100001", settled[0].setl_id)
    other = client.settle(bill(code="H44030100001", psn_no="44030000000000000001", insuplc="440300"))
    by_msgid = client.get("H44010100001", msgid=settled[1].msgid)
    assert by_msgid == settled[1]
    with pytest.raises(CallRefused) as refused:
        client.get("H44030100001", setl_id=settled[1].setl_id)  # not that institution's
    assert refused.value.code == grpc.StatusCode.NOT_FOUND
    listed = list(client.list_settlements("H44010100001", "2026-10"))
    assert [r.setl_id for r in listed][:3] == [s.setl_id for s in settled]
    assert len(listed) == 4 and other.setl_id not in {r.setl_id for r in listed}
    assert list(client.list_settlements("H44010100001", "2026-09")) == []
    platform = pb.Totals(
        setl_cnt=4,
        medfee_sumamt_fen=sum(r.medfee_sumamt_fen for r in listed),
        fund_pay_sumamt_fen=sum(r.fund_pay_sumamt_fen for r in listed),
        acct_pay_fen=sum(r.acct_pay_fen for r in listed),
        psn_cash_pay_fen=sum(r.psn_cash_pay_fen for r in listed),
    )
    balanced = client.reconcile_totals("H44010100001", "2026-10", pb.CLR_TYPE_OUTPATIENT, platform)
    assert (balanced.result, balanced.stmt_rslt) == (pb.RECONCILE_RESULT_BALANCED, 0)
    assert balanced.platform_totals == platform
    fewer = pb.Totals(setl_cnt=3)
    assert client.reconcile_totals("H44010100001", "2026-10", pb.CLR_TYPE_OUTPATIENT, fewer).stmt_rslt == 1
    more = pb.Totals(setl_cnt=5)
    assert client.reconcile_totals("H44010100001", "2026-10", pb.CLR_TYPE_OUTPATIENT, more).stmt_rslt == 2
    off = pb.Totals()
    off.CopyFrom(platform)
    off.acct_pay_fen += 1
    assert client.reconcile_totals("H44010100001", "2026-10", pb.CLR_TYPE_OUTPATIENT, off).stmt_rslt == 3
    with pytest.raises(CallRefused) as refused:
        client.reconcile_totals("H44010100001", "2026-13", pb.CLR_TYPE_OUTPATIENT, platform)
    assert [f for f, _ in refused.value.field_violations] == ["setlym"]


def test_health_is_serving(server):
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "medsettle.v1.SettlementService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    return found


def test_grpcurl_lists_and_calls_through_reflection(server):
    listing = subprocess.run([_grpcurl(), "-plaintext", server.target, "list"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "medsettle.v1.SettlementService" in listing.stdout.split()
    bill = {
        "msgid": "GRPCURL-0001", "fixmedins_code": "H44010100001", "psn_no": "44010000000000000001",
        "insutype": "INSUTYPE_EMPLOYEE_BASIC", "insuplc_admdvs": "440100", "visit_type": "VISIT_TYPE_OUTPATIENT",
        "acct_used_flag": True, "fee_lines": [{"feedetl_sn": "1", "hilist_code": "XB0202", "cnt": 2, "pric_fen": 452}],
    }
    call = subprocess.run(
        [_grpcurl(), "-plaintext", "-H", f"authorization: Bearer {server.tokens['H44010100001']}", "-d", json.dumps(bill),
         server.target, "medsettle.v1.SettlementService/Settle"],
        capture_output=True, text=True, timeout=60,
    )
    assert call.returncode == 0, call.stderr
    result = json.loads(call.stdout)["result"]
    amounts = {k.replace("_", "").lower(): v for k, v in result.items()}
    assert amounts["medfeesumamtfen"] == "904" and amounts["setlid"].startswith("S")


def test_random_workload_keeps_every_book_balanced(client, bill, server):
    rng = random.Random(20261015)
    settled = []
    for i in range(300):
        psn_no, insuplc, insutype = rng.choice(PERSONS)
        lines = [(code, rng.randint(1, 5), price + rng.randint(-500, 3000)) for code, price in rng.sample(ITEMS, rng.randint(1, 4))]
        visit = rng.choice([pb.VISIT_TYPE_OUTPATIENT, pb.VISIT_TYPE_INPATIENT])
        r = client.settle(bill(code=rng.choice(HOSPITALS), psn_no=psn_no, insuplc=insuplc, insutype=insutype,
                               visit=visit, lines=lines, acct=rng.random() < 0.7))
        settled.append(r)
        if rng.random() < 0.15:
            client.reverse(f"RV{i:06d}", r.fixmedins_code, r.setl_id)
    b = server.service.store.book_balances()
    assert trial_balance_breaks(b) == []
    assert reciprocity_breaks(b) == []
    # every settlement's amounts are in the ledger: fund + account parts add up
    reader = server.service.store.reader()
    owed = reader.execute("SELECT SUM(hifp_pay_fen + acct_pay_fen) FROM settlements").fetchone()[0]
    payable = sum(v for (book, account), v in b.items() if account.startswith("payable:institution:"))
    assert payable == -owed
    # no personal account below zero
    assert reader.execute("SELECT MIN(acct_balc_fen) FROM persons").fetchone()[0] >= 0


def test_batch_stream_answers_like_the_item_stream(client, bill, server):
    """SettleBatchStream: 600 bills in batches of 256, 256 and 88; every item
    answered in order with its own status, refused ones alone, duplicates
    answered with the first result, every book balanced."""
    requests = [bill(psn_no=PERSONS[i % 3][0], insuplc=PERSONS[i % 3][1], insutype=PERSONS[i % 3][2]) for i in range(600)]
    requests[5].fee_lines[0].cnt = 0
    requests[300].psn_no = "99999999999999999999"
    requests[301] = requests[300 - 1]
    responses = list(client.settle_batches(requests, batch_size=256))
    assert [r.seq for r in responses] == list(range(600))
    assert [r.msgid for r in responses] == [r.msgid for r in requests]
    refused = {i: r.status.reason for i, r in enumerate(responses) if r.status.code != 0}
    assert refused == {5: "FIELD_INVALID", 300: "UNKNOWN_PERSON"}
    assert responses[301].result == responses[299].result
    stored = server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
    assert stored == 597
    b = server.service.store.book_balances()
    assert trial_balance_breaks(b) == [] and reciprocity_breaks(b) == []


def test_batch_stream_item_of_another_institution_is_denied_alone(client, bill, server):
    requests = [bill(), bill(code="H44030100001", psn_no="44030000000000000001", insuplc="440300"), bill()]
    responses = list(client.settle_batches(requests, batch_size=3))
    assert [r.status.code for r in responses] == [0, grpc.StatusCode.PERMISSION_DENIED.value[0], 0]


@pytest.mark.parametrize("size", [0, 257])
def test_batch_stream_refuses_a_batch_out_of_bounds(client, bill, server, size):
    """An empty or oversized batch ends the stream with INVALID_ARGUMENT
    naming `requests`; the batches before it were settled."""
    good = pb.SettleBatchStreamRequest(requests=[bill()])
    bad = pb.SettleBatchStreamRequest(requests=[bill() for _ in range(size)])
    stream = client._stub.SettleBatchStream(iter([good, bad]), metadata=client._metadata("H44010100001"))
    answers = []
    with pytest.raises(grpc.RpcError) as error:
        for response in stream:
            answers.extend(response.items)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests" in error.value.details()
    assert [a.status.code for a in answers] == [0]
    stored = server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
    assert stored == 1


def test_batch_stream_splits_large_answers_under_the_bound(client, bill, server, monkeypatch):
    """A batch's answers go out in several messages once they pass the split
    size (lowered here so that 200 short bills cross it), all items in order."""
    from medsettle.server import servicer

    monkeypatch.setattr(servicer, "RESPONSE_SPLIT_BYTES", 8 * 1024)
    requests = [bill(psn_no=PERSONS[i % 3][0], insuplc=PERSONS[i % 3][1], insutype=PERSONS[i % 3][2]) for i in range(200)]
    stream = client._stub.SettleBatchStream(iter([pb.SettleBatchStreamRequest(requests=requests)]),
                                            metadata=client._metadata("H44010100001"))
    messages = list(stream)
    assert len(messages) > 1
    largest_item = max(i.ByteSize() for m in messages for i in m.items)
    # each item adds its tag and length prefix (at most 4 bytes here) to the message
    assert all(m.ByteSize() < 8 * 1024 + largest_item + 4 * len(m.items) for m in messages)
    items = [i for m in messages for i in m.items]
    assert [i.seq for i in items] == list(range(200))
    assert all(i.status.code == 0 for i in items)


def test_client_and_server_agree_on_the_batch_bound():
    from medsettle.client.settlement_client import MAX_BATCH_BILLS as client_bound
    from medsettle.server.servicer import MAX_BATCH_BILLS as server_bound

    assert client_bound == server_bound

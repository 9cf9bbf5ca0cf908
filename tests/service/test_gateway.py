"""The national-interface JSON gateway through a real HTTP client against a
real server on port 0 (gRPC and HTTP in one process, one service layer)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from medsettle.client.settlement_client import CallRefused
from medsettle.server.gateway.openapi import EXAMPLE_REQUESTS
from medsettle.server.gateway.yuan import fen_of_yuan

from conftest import ServerThread, make_bill
from gateway_client import GatewayClient, bill_input, envelope

HEBEI = "H13010100001"
GZ = "H44010100001"
AMOUNTS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
           "hifp_pay", "fund_pay_sumamt", "psn_part_amt", "hosp_part_amt", "acct_pay", "psn_cash_pay", "balc")


@pytest.fixture
def server(db_path, clock):
    running = ServerThread(db_path, clock, http_address="127.0.0.1:0").start()
    yield running
    running.stop()


@pytest.fixture
def http(server) -> GatewayClient:
    return GatewayClient(server.http_port, server.tokens)


def hebei_input() -> dict:
    return {"data": {"psn_no": "13010000000000000001", "insutype": "310", "insuplc_admdvs": "130100",
                     "visit_type": "VISIT_TYPE_OUTPATIENT", "acct_used_flag": "1"},
            "feedetail": [{"feedetl_sn": "1", "med_list_codg": "XB0202", "cnt": 1, "pric": Decimal("4.52")}]}


def settle(http: GatewayClient, code: str = GZ, input_: dict | None = None, msgid: str | None = None) -> dict:
    status, answer = http.post(envelope("2207", code, input_ or bill_input(), msgid))
    assert (status, answer["infcode"], answer["err_msg"]) == (200, 0, None), answer
    return answer["output"]


def test_the_hebei_worked_example_gives_the_published_amounts_in_yuan(http):
    status, answer = http.post(envelope("2207", HEBEI, hebei_input()))
    assert status == 200 and answer["infcode"] == 0
    info = answer["output"]["setlinfo"]
    assert info["medfee_sumamt"] == Decimal("4.52")
    assert info["preselfpay_amt"] == Decimal("0.23")  # 0.226 rounded half-up
    assert info["inscp_scp_amt"] == Decimal("4.29") == info["act_pay_dedc"]  # absorbed by the deductible
    assert info["fund_pay_sumamt"] == Decimal("0.00") and info["hifp_pay"] == Decimal("0.00")
    assert info["acct_pay"] == Decimal("4.52") and info["psn_cash_pay"] == Decimal("0.00")
    assert info["balc"] == Decimal("1373.63")  # 1378.15 -> 1373.63
    assert str(info["balc"]) == "1373.63" and str(info["fund_pay_sumamt"]) == "0.00"  # two decimals on the wire
    detail = answer["output"]["setldetail"]
    assert [(d["feedetl_sn"], d["det_item_fee_sumamt"], d["preselfpay_amt"]) for d in detail] == [("1", Decimal("4.52"), Decimal("0.23"))]


def test_pre_settle_stores_nothing(http):
    request = envelope("2206", HEBEI, hebei_input())
    status, answer = http.post(request)
    assert status == 200 and answer["output"]["setlinfo"]["setl_id"] == ""
    assert answer["output"]["setlinfo"]["acct_pay"] == Decimal("4.52")
    status, looked_up = http.post(envelope("5203", HEBEI, {"data": {"msgid": request["msgid"]}}))
    assert status == 404 and looked_up["infcode"] == -1 and looked_up["err_detail"]["reason"] == "SETTLEMENT_NOT_FOUND"


def test_reverse_and_look_up(http):
    settled = settle(http)["setlinfo"]
    status, answer = http.post(envelope("2208", GZ, {"data": {"setl_id": settled["setl_id"]}}))
    assert status == 200, answer
    reversal = answer["output"]["setlinfo"]
    assert reversal["orig_setl_id"] == settled["setl_id"] and reversal["kind"] == 2
    for name in AMOUNTS[:-1]:
        assert reversal[name] == -settled[name], name
    for key in ({"setl_id": settled["setl_id"]}, {"msgid": settled["msgid"]}):
        status, answer = http.post(envelope("5203", GZ, {"data": key}))
        assert status == 200 and answer["output"]["setlinfo"] == settled
    status, again = http.post(envelope("2208", GZ, {"data": {"setl_id": settled["setl_id"]}}))
    assert status == 400 and again["err_detail"]["reason"] == "ALREADY_REVERSED"
    status, both = http.post(envelope("5203", GZ, {"data": {"setl_id": "S1", "msgid": "M1"}}))
    assert status == 400 and both["err_msg"].startswith("FIELD_INVALID: key (input.data.key): give exactly one")


def test_reconcile_totals_and_details(http):
    settled = [settle(http)["setlinfo"] for _ in range(3)]
    total = sum(fen_of_yuan(s["medfee_sumamt"]) for s in settled)
    sums = {name: f"{sum(fen_of_yuan(s[name]) for s in settled) / 100:.2f}"  # test-side text, not the code under test
            for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")}
    data = {"setlym": "2026-10", "clr_type": "11", "fixmedins_setl_cnt": 3, **sums}
    status, answer = http.post(envelope("3201", GZ, {"data": data}))
    assert status == 200, answer
    stmt = answer["output"]["stmtinfo"]
    assert (stmt["stmt_rslt"], stmt["setl_cnt"], fen_of_yuan(stmt["medfee_sumamt"])) == (0, 3, total)
    status, answer = http.post(envelope("3201", GZ, {"data": {**data, "fixmedins_setl_cnt": 2}}))
    assert answer["output"]["stmtinfo"]["stmt_rslt"] == 1  # the platform has more
    pages = []
    for page_num in (1, 2):
        status, answer = http.post(envelope("3202", GZ, {"data": {"setlym": "2026-10", "page_num": page_num, "page_size": 2}}))
        assert status == 200, answer
        pages.append(answer["output"])
    assert [p["has_more"] for p in pages] == [True, False]
    assert [s["setl_id"] for p in pages for s in p["data"]] == [s["setl_id"] for s in settled]
    assert pages[0]["data"][0] == settled[0]


def test_a_retry_returns_the_first_answer_and_another_payload_is_a_conflict(http, server):
    request = envelope("2207", GZ, bill_input())
    first = http.post(request)
    again = http.post(request)
    assert first[0] == again[0] == 200
    assert again[1]["output"] == first[1]["output"]
    changed = {**request, "input": bill_input(lines=[("S0001", 2, "25.00")])}
    status, conflict = http.post(changed)
    assert status == 409 and conflict["infcode"] == -1 and conflict["err_detail"]["reason"] == "IDEMPOTENCY_CONFLICT"
    assert conflict["err_msg"].startswith("IDEMPOTENCY_CONFLICT") and conflict["inf_refmsgid"] == request["msgid"]
    assert len(server.service.store.book_balances()) > 0
    status, listed = http.post(envelope("3202", GZ, {"data": {"setlym": "2026-10"}}))
    assert [s["msgid"] for s in listed["output"]["data"]] == [request["msgid"]]  # settled once


def test_an_institution_acts_only_for_itself(http, server):
    request = envelope("2207", HEBEI, hebei_input())
    status, answer = http.post(request, token=server.tokens.get(GZ))
    assert status == 403 and answer["err_detail"]["reason"] == "NOT_YOUR_INSTITUTION" and answer["infcode"] == -1
    assert http.post(request, token=None)[0] == 401
    assert http.post(request, token="not-a-token")[0] == 401
    assert http.post(request, token=server.operator_token)[0] == 403  # an operator settles nothing
    settled = settle(http, HEBEI, hebei_input())["setlinfo"]
    lookup = envelope("5203", HEBEI, {"data": {"setl_id": settled["setl_id"]}})
    assert http.post(lookup, token=server.tokens.get(GZ))[0] == 403
    status, read = http.post(lookup, token=server.operator_token)  # an operator reads across institutions
    assert status == 200 and read["output"]["setlinfo"] == settled


def test_a_settlement_over_http_reads_the_same_over_grpc_and_back(http, client):
    over_http = settle(http)
    result = client.get(GZ, setl_id=over_http["setlinfo"]["setl_id"])
    info = over_http["setlinfo"]
    for name in AMOUNTS:
        assert fen_of_yuan(info[name]) == getattr(result, f"{name}_fen"), name
    assert (info["msgid"], info["psn_no"], info["clr_type"], info["pay_loc"], info["setlym"]) == \
        (result.msgid, result.psn_no, result.clr_type, result.pay_loc, result.setlym)
    assert [(d["feedetl_sn"], fen_of_yuan(d["det_item_fee_sumamt"]), fen_of_yuan(d["preselfpay_amt"]))
            for d in over_http["setldetail"]] == \
        [(ls.feedetl_sn, ls.det_item_fee_sumamt_fen, ls.preselfpay_amt_fen) for ls in result.line_splits]

    over_grpc = client.settle(make_bill(code=GZ))
    status, answer = http.post(envelope("5203", GZ, {"data": {"setl_id": over_grpc.setl_id}}))
    assert status == 200
    for name in AMOUNTS:
        assert fen_of_yuan(answer["output"]["setlinfo"][name]) == getattr(over_grpc, f"{name}_fen"), name


def test_a_grpc_retry_of_an_http_settlement_is_the_same_settlement(http, client):
    request = envelope("2207", GZ, bill_input(lines=[("S0001", 1, "25.00")]))
    info = settle(http, input_=request["input"], msgid=request["msgid"])["setlinfo"]
    retried = client.settle(make_bill(code=GZ, lines=[("S0001", 1, 2500)], msgid=request["msgid"]))
    assert retried.setl_id == info["setl_id"]
    with pytest.raises(CallRefused) as refused:
        client.settle(make_bill(code=GZ, lines=[("S0001", 1, 2501)], msgid=request["msgid"]))
    assert refused.value.reason == "IDEMPOTENCY_CONFLICT"


def test_refusals_carry_the_grpc_reason_and_field_names(http, client):
    lines = [("S0001", 0, 2500), ("NOPE!", 1, 0)]
    with pytest.raises(CallRefused) as over_grpc:
        client.settle(make_bill(code=GZ, psn_no="", lines=lines))
    status, answer = http.post(envelope("2207", GZ, bill_input(psn_no="", lines=[("S0001", 0, "25.00"), ("NOPE!", 1, "0")])))
    assert status == 400
    assert answer["err_detail"]["reason"] == over_grpc.value.reason == "FIELD_INVALID"
    assert [(v["field"], v["description"]) for v in answer["err_detail"]["field_violations"]] == over_grpc.value.field_violations
    for field, _ in over_grpc.value.field_violations:
        assert field in answer["err_msg"]
    assert "fee_lines[1].pric_fen (input.feedetail[1].pric)" in answer["err_msg"]
    status, unknown = http.post(envelope("2207", GZ, bill_input(psn_no="44019999999999999999")))
    assert (status, unknown["err_detail"]["reason"]) == (400, "UNKNOWN_PERSON")


def test_yuan_with_more_than_two_decimals_is_refused_naming_the_field(http):
    status, answer = http.post(envelope("2207", GZ, bill_input(lines=[("S0001", 1, "25.001")])))
    assert status == 400
    assert answer["err_msg"] == "FIELD_INVALID: fee_lines[0].pric_fen (input.feedetail[0].pric): must have at most two decimals, got 25.001"
    status, answer = http.post_text(raw=b'{"infno":"2207","msgid":"G1","fixmedins_code":"H44010100001","input":{"data":{},'
                                    b'"feedetail":[{"feedetl_sn":"1","hilist_code":"S0001","cnt":1,"pric":25.001}]}}',
                                    token=http.tokens.get(GZ))
    assert status == 400 and "fee_lines[0].pric_fen (input.feedetail[0].pric): must have at most two decimals" in answer


@pytest.mark.parametrize("infno", sorted(EXAMPLE_REQUESTS))
def test_the_openapi_examples_are_answered(http, infno):
    if infno in ("2208", "5203", "3201"):  # they read or reverse the example settlement
        http.post(EXAMPLE_REQUESTS["2207"])
    status, answer = http.post(EXAMPLE_REQUESTS[infno])
    assert (status, answer["infcode"]) == (200, 0), answer


def test_openapi_description_and_docs_page(http):
    status, text = http.get("/fsi/api/openapi.json")
    assert status == 200 and '"openapi":"3.1.0"' in text and "/fsi/api/rsfComIfsService/callService" in text
    status, page = http.get("/fsi/api/docs")
    assert status == 200 and "<h1>" in page and "2207" in page and "<script" not in page


def test_gateway_calls_are_counted_in_the_metrics(db_path, clock):
    from medsettle.client.metrics_scrape import by_label, scrape

    running = ServerThread(db_path, clock, http_address="127.0.0.1:0", metrics_address="127.0.0.1:0").start()
    try:
        http = GatewayClient(running.http_port, running.tokens)
        request = envelope("2207", GZ, bill_input())
        assert http.post(request)[0] == http.post(request)[0] == 200  # a settlement and its retry
        assert http.post({**request, "input": bill_input(lines=[("S0001", 2, "25.00")])})[0] == 409
        assert http.post(envelope("2207", HEBEI, hebei_input()), token=running.tokens.get(GZ))[0] == 403
        assert http.post(request, token=None)[0] == 401
        assert http.post_text(raw=b"{", token=running.tokens.get(GZ))[0] == 400
        samples = scrape(f"http://127.0.0.1:{running.metrics_port}/metrics")
        assert by_label(samples, "medsettle_calls_total", "code", method="http_2207") == {
            "OK": 2, "ALREADY_EXISTS": 1, "PERMISSION_DENIED": 1}
        assert by_label(samples, "medsettle_calls_total", "code", method="http") == {
            "UNAUTHENTICATED": 1, "INVALID_ARGUMENT": 1}
        assert by_label(samples, "medsettle_outcomes_total", "result", method="http_2207") == {
            "OK": 2, "IDEMPOTENCY_CONFLICT": 1, "NOT_YOUR_INSTITUTION": 1}
    finally:
        running.stop()


def test_a_gateway_address_that_cannot_be_bound_is_refused_naming_the_option(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "medsettle", "serve", "--db", str(tmp_path / "l.db"),
                               "--listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"--http-listen: cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

"""Malformed envelopes against a real gateway: wrong types, missing input,
huge bodies, bad JSON, bad UTF-8. Every answer is an envelope refusal with
a 4xx status: zero 5xx."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import FixedClock
from medsettle.server.app import ServerLimits

from conftest import SETTLE_AT, ServerThread
from gateway_client import GatewayClient, bill_input, envelope

CODE = "H44010100001"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    db = tmp_path_factory.mktemp("gateway-fuzz") / "ledger.db"
    running = ServerThread(db, FixedClock(SETTLE_AT), http_address="127.0.0.1:0",
                           limits=ServerLimits(max_message_bytes=64 * 1024)).start()
    yield GatewayClient(running.http_port, running.tokens)
    running.stop()


def assert_refused(status: int, text: str, expected_status: int = 400) -> dict:
    assert status == expected_status, text
    answer = json.loads(text)
    assert answer["infcode"] == -1 and answer["output"] is None and answer["err_msg"], answer
    return answer


def post_raw(http: GatewayClient, raw: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    return http.post_text(raw=raw, token=http.tokens.get(CODE), headers=headers)


@pytest.mark.parametrize(("raw", "field"), [
    (b"", "request"),
    (b"{", "request"),
    (b"null", "request"),
    (b"[]", "request"),
    (b"123", "request"),
    (b'"2207"', "request"),
    (b'{"infno": NaN}', "request"),
    (b'{"infno": "2207", "infno": "2206"}', "request"),
    (b"\xff\xfe{}", "request"),
    ('{"infno": "2207", "msgid": "M\udcff"}'.encode("utf-8", "surrogatepass"), "request"),
    (b"[" * 30_000 + b"]" * 30_000, "request"),
    (b'{"a": ' + b"1" * 5_000 + b"}", "request"),
    (b'{"infno": "2207", "msgid": "M1", "fixmedins_code": "H44010100001"}', "input"),
    (b'{"infno": "2207", "msgid": "M1", "fixmedins_code": "H44010100001", "input": "x"}', "input"),
    (b'{"infno": 2207, "msgid": "M1", "fixmedins_code": "H44010100001", "input": {}}', "infno"),
    (b'{"infno": "2207", "msgid": 1, "fixmedins_code": "H44010100001", "input": {}}', "msgid"),
    (b'{"infno": "2207", "msgid": "M1", "fixmedins_code": "H44010100001", "input": {"data": 1}}', "input.data"),
    (b'{"infno": "2207", "msgid": "M1", "fixmedins_code": "H44010100001", "input": {"feedetail": [1]}}', "fee_lines[0]"),
    (b'{"infno": "2207", "msgid": "M1", "fixmedins_code": "H44010100001", "input": {"data": {"psn_no": 1e999999}}}', "psn_no"),
    # msgids echoed back in inf_refmsgid that look like the answer writer's marking of an amount
    (b'{"infno": "2207", "msgid": "\\u0000\\u0001123", "fixmedins_code": "H44010100001", "input": {}}', "msgid"),
    (b'{"infno": "2207", "msgid": "x\\"\\u0000\\u0001123", "fixmedins_code": "H44010100001", "input": {}}', "msgid"),
])
def test_malformed_bodies_are_refused_naming_the_field(http, raw, field):
    answer = assert_refused(*post_raw(http, raw))
    assert field in [v["field"] for v in answer["err_detail"]["field_violations"]], answer
    if field == "msgid" and isinstance(json.loads(raw)["msgid"], str):
        assert answer["inf_refmsgid"] == json.loads(raw)["msgid"]  # echoed back as sent


def test_a_body_over_the_bound_is_refused_with_413(http):
    body = json.dumps(envelope("2207", CODE, {"data": {"psn_no": "x" * 70_000}})).encode()
    answer = assert_refused(*post_raw(http, body), expected_status=413)
    assert "at most 65536 bytes" in answer["err_msg"]


def test_a_chunked_body_over_the_bound_is_refused_with_413(http):
    async def chunks():
        for _ in range(100):
            yield b" " * 1024

    async def send() -> tuple[int, str]:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.post(http.url, data=chunks(), headers={"Authorization": f"Bearer {http.tokens.get(CODE)}"}) as r:
                return r.status, await r.text()
    assert_refused(*asyncio.run(send()), expected_status=413)


def test_thousands_of_fee_lines_are_refused_without_reading_each(http):
    lines = [{}] * 10_000
    answer = assert_refused(*post_raw(http, json.dumps(envelope("2207", CODE, {"feedetail": lines})).encode()))
    assert answer["err_detail"]["field_violations"][0]["field"] == "fee_lines"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = ("psn_no", "insutype", "insuplc_admdvs", "visit_type", "acct_used_flag", "delivery_fee", "ecert_token",
          "setl_id", "msgid", "setlym", "clr_type", "page_num", "page_size", "fixmedins_setl_cnt", "medfee_sumamt")
LINE_FIELDS = ("feedetl_sn", "hilist_code", "med_list_codg", "cnt", "pric")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(infno=st.sampled_from(["2206", "2207", "2208", "5203", "3201", "3202"]), where=st.sampled_from(["input", "data", "line", "header"]),
       field=st.sampled_from(FIELDS + LINE_FIELDS + ("infno", "msgid", "fixmedins_code", "data", "feedetail")), value=JSON)
def test_any_value_anywhere_is_answered_without_a_5xx(http, infno, where, field, value):
    body = envelope(infno, CODE, bill_input())
    body["input"]["data"].update(setl_id="S000000000001", setlym="2026-10", clr_type=11)
    target = {"input": body["input"], "data": body["input"]["data"], "line": body["input"]["feedetail"][0],
              "header": body}[where]
    target[field] = value
    status, text = post_raw(http, json.dumps(body).encode())
    assert status < 500, text
    answer = json.loads(text)
    assert answer["infcode"] in (0, -1) and (answer["infcode"] == 0) == (status == 200), text
    if status != 200:
        assert answer["err_msg"] and answer["err_detail"]["reason"]


def test_calls_beyond_the_concurrency_bound_are_refused_with_429(tmp_path):
    running = ServerThread(tmp_path / "ledger.db", FixedClock(SETTLE_AT), http_address="127.0.0.1:0",
                           limits=ServerLimits(max_concurrent_rpcs=1)).start()
    try:
        http = GatewayClient(running.http_port, running.tokens)
        body = json.dumps(envelope("2207", CODE, bill_input())).encode()

        async def hold_one_and_send_another() -> tuple[int, str]:
            # The first call's body arrives slowly: it is in progress until its last byte.
            reader, writer = await asyncio.open_connection("127.0.0.1", running.http_port)
            writer.write(b"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + running.tokens.get(CODE).encode() +
                         b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\n\r\n" + body[:10])
            await writer.drain()
            await asyncio.sleep(0.3)
            second = await asyncio.to_thread(http.post_text, envelope("2207", CODE, bill_input()))
            writer.write(body[10:])
            await writer.drain()
            first = await reader.readuntil(b"\r\n")
            writer.close()
            assert first.startswith(b"HTTP/1.1 200"), first
            return second

        status, text = asyncio.run(hold_one_and_send_another())
        answer = assert_refused(status, text, expected_status=429)
        assert answer["err_detail"]["reason"] == "OVERLOADED" and "retry with the same msgid" in answer["err_msg"]
        assert http.post(envelope("2207", CODE, bill_input()))[0] == 200  # free again
    finally:
        running.stop()


def test_a_caller_without_a_credential_is_refused_before_its_body_and_holds_no_place(tmp_path):
    running = ServerThread(tmp_path / "ledger.db", FixedClock(SETTLE_AT), http_address="127.0.0.1:0",
                           limits=ServerLimits(max_concurrent_rpcs=1)).start()
    try:
        http = GatewayClient(running.http_port, running.tokens)

        async def announce_a_body_never_sent() -> tuple[bytes, tuple[int, str]]:
            reader, writer = await asyncio.open_connection("127.0.0.1", running.http_port)
            writer.write(b"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            await writer.drain()
            first = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout=10)  # answered without the body
            second = await asyncio.to_thread(http.post_text, envelope("2207", CODE, bill_input()))
            writer.close()
            return first, second

        first, (status, text) = asyncio.run(announce_a_body_never_sent())
        assert first.startswith(b"HTTP/1.1 401"), first
        assert status == 200, text  # the one place in progress was never taken by the caller without a credential
    finally:
        running.stop()


def test_a_body_that_stops_arriving_is_refused_with_408_and_frees_its_place(tmp_path):
    running = ServerThread(tmp_path / "ledger.db", FixedClock(SETTLE_AT), http_address="127.0.0.1:0",
                           limits=ServerLimits(max_concurrent_rpcs=1, http_body_timeout_s=0.5)).start()
    try:
        http = GatewayClient(running.http_port, running.tokens)

        async def send_part_of_a_body() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", running.http_port)
            writer.write(b"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + running.tokens.get(CODE).encode() +
                         b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            await writer.drain()
            head = await asyncio.wait_for(reader.read(2000), timeout=10)
            writer.close()
            return head

        head = asyncio.run(send_part_of_a_body())
        assert head.startswith(b"HTTP/1.1 408"), head
        answer = json.loads(head.partition(b"\r\n\r\n")[2])
        assert answer["infcode"] == -1 and "the body must arrive within 0.5 s" in answer["err_msg"], answer
        assert http.post(envelope("2207", CODE, bill_input()))[0] == 200  # its place is free again
    finally:
        running.stop()


def test_a_connection_without_a_whole_request_is_closed_after_the_idle_timeout(tmp_path):
    running = ServerThread(tmp_path / "ledger.db", FixedClock(SETTLE_AT), http_address="127.0.0.1:0",
                           limits=ServerLimits(http_idle_timeout_s=0.5)).start()
    try:
        async def open_two_and_wait() -> tuple[bytes, bytes]:
            idle = await asyncio.open_connection("127.0.0.1", running.http_port)
            trickling = await asyncio.open_connection("127.0.0.1", running.http_port)
            trickling[1].write(b"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\nHost: x\r\n")
            await trickling[1].drain()
            # each is closed by the server: read() ends with b"" (a timeout here fails the test)
            closed = [await asyncio.wait_for(reader.read(), timeout=10) for reader, _ in (idle, trickling)]
            for _, writer in (idle, trickling):
                writer.close()
            return closed[0], closed[1]

        assert asyncio.run(open_two_and_wait()) == (b"", b"")
    finally:
        running.stop()

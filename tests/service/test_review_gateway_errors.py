"""The JSON gateway's writes now reach the writer as the gRPC request they
stand for (server/gateway/http.py _settle_request): text the request
message cannot hold, and text the writer's checks choke on, must still be
answered with a 4xx naming the field, as every other bad value is."""

from __future__ import annotations

import json

import pytest

from medsettle.ledger import ecert
from medsettle.ledger.clock import FixedClock

from conftest import SETTLE_AT, ServerThread
from gateway_client import GatewayClient, bill_input, envelope

CODE = "H44010100001"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    db = tmp_path_factory.mktemp("review-gateway") / "ledger.db"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(ecert.KEY_ENV, "6b" * 32)  # e-certs accepted: their tokens are checked
        running = ServerThread(db, FixedClock(SETTLE_AT), http_address="127.0.0.1:0").start()
    yield GatewayClient(running.http_port, running.tokens)
    running.stop()


def _post_with(http: GatewayClient, **data: str) -> tuple[int, dict]:
    body = envelope("2207", CODE, bill_input())
    body["input"]["data"].update(data)
    body["input"]["data"].pop("psn_no")
    status, text = http.post_text(raw=json.dumps(body).encode(), token=http.tokens.get(CODE))
    return status, json.loads(text)


def _fields(answer: dict) -> list[str]:
    return [v["field"] for v in answer["err_detail"]["field_violations"]]


def test_a_well_formed_foreign_token_is_refused_naming_it(http) -> None:
    """The control: a token signed with another key."""
    status, answer = _post_with(http, ecert_token=ecert.issue(b"x" * 32, "44010000000000000001", SETTLE_AT))
    assert status == 400 and _fields(answer) == ["ecert_token"], answer


def test_an_e_cert_token_with_a_lone_surrogate_is_refused_naming_it(http) -> None:
    status, answer = _post_with(http, ecert_token="MSEC1.a.\ud800")
    # the token is refused as text, so the bill also has no person to settle for (psn_no)
    assert status == 400 and _fields(answer)[0] == "ecert_token", answer


def test_an_e_cert_token_with_a_non_ascii_signature_is_refused_naming_it(http) -> None:
    status, answer = _post_with(http, ecert_token="MSEC1.eyJhIjoxfQ.\u00e9")
    assert status == 400 and _fields(answer) == ["ecert_token"], answer

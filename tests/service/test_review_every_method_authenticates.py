"""Authentication now runs inside each SettlementService handler (the Gate
of server/auth.py, wrapped in by server/metrics.py measured()), with a fast
path for a known token on a fresh table. Every method of the service, raw
bytes or message, unary or streamed, must still refuse a call without a
credential, with a revoked one (from the first call after the table's
time to live, not some later one), and an undecodable request from an
unknown caller, with the same UNAUTHENTICATED status and details."""

from __future__ import annotations

import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from medsettle.ledger.storage.credentials import CredentialStore, Role
from medsettle.server.app import SETTLEMENT_DESCRIPTOR, SETTLEMENT_SERVICE
from medsettle.server.auth import UNAUTHENTICATED_MESSAGE, UNAUTHENTICATED_REASON, CredentialCache

from conftest import SETTLE_AT, ServerThread

HOSPITAL = "H44010100001"
TTL_S = 0.5
METHODS = [m.name for m in SETTLEMENT_DESCRIPTOR.methods]


def _call(channel: grpc.Channel, method: str, request: bytes, token: str | None) -> None:
    """One call of `method` with raw request bytes (a stream of one for a client stream), read to its end."""
    descriptor = SETTLEMENT_DESCRIPTOR.methods_by_name[method]
    path = f"/{SETTLEMENT_SERVICE}/{method}"
    metadata = [("authorization", f"Bearer {token}")] if token else []
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (descriptor.client_streaming, descriptor.server_streaming)]
    stub = kind(path, request_serializer=None, response_deserializer=None)
    sent = iter([request]) if descriptor.client_streaming else request
    answer = stub(sent, metadata=metadata, timeout=20)
    if descriptor.server_streaming:
        list(answer)


def _unauthenticated(channel: grpc.Channel, method: str, request: bytes, token: str | None) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _call(channel, method, request, token)
    error = refused.value
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (method, error.details())
    status = rpc_status.from_call(error)
    assert status is not None and status.message == UNAUTHENTICATED_MESSAGE, method
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == UNAUTHENTICATED_REASON, method


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    from medsettle.ledger.clock import FixedClock

    db = tmp_path_factory.mktemp("review-auth") / "ledger.db"
    server = ServerThread(db, FixedClock(SETTLE_AT), credentials=CredentialCache(db, ttl_s=TTL_S)).start()
    yield server
    server.stop()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("token", [None, "mst_never-issued"], ids=["no-token", "unknown-token"])
@pytest.mark.parametrize("request_bytes", [b"", b"\xff\xff\xff"], ids=["empty-message", "undecodable"])
def test_every_method_refuses_an_unknown_caller_first(running, method: str, token: str | None,
                                                      request_bytes: bytes) -> None:
    with grpc.insecure_channel(running.target) as channel:
        _unauthenticated(channel, method, request_bytes, token)
    assert running.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0


def test_a_revoked_token_stops_on_every_method_from_the_first_call_after_the_time_to_live(running) -> None:
    with CredentialStore(running.db_path) as store:
        credential, token = store.issue(Role.INSTITUTION, HOSPITAL, "review", SETTLE_AT)
    with grpc.insecure_channel(running.target) as channel:
        deadline = time.monotonic() + 10
        while True:  # known once looked up or reloaded; then on the fast path
            try:
                _call(channel, "ListSettlements", b"", token)
            except grpc.RpcError as error:
                assert error.code() != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() < deadline
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    continue
            break
        with CredentialStore(running.db_path) as store:
            store.revoke(credential.cred_id, SETTLE_AT)
        time.sleep(TTL_S * 1.5)
        for method in METHODS:
            _unauthenticated(channel, method, b"", token)

"""The gateway under mutual TLS: the same --tls-* files as gRPC, the client
certificate names the caller, a client without one gets no answer."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from conftest import ServerThread
from gateway_client import GatewayClient, bill_input, envelope
from test_mtls import _pem, _pem_key, pki  # noqa: F401  (the test PKI fixture)


@pytest.fixture
def tls_gateway(db_path, clock, pki):  # noqa: F811
    running = ServerThread(db_path, clock, tls=pki["server"], http_address="127.0.0.1:0").start()
    yield running
    running.stop()


def client_context(tmp_path, pki, name: str | None) -> ssl.SSLContext:  # noqa: F811
    context = ssl.create_default_context(cadata=pki["ca"].decode())
    if name is not None:
        cert, key = pki["clients"][name]
        (tmp_path / "c.pem").write_bytes(_pem(cert))
        (tmp_path / "k.pem").write_bytes(_pem_key(key))
        context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    return context


def test_the_client_certificate_is_the_credential(tls_gateway, pki, tmp_path):  # noqa: F811
    hospital = GatewayClient(tls_gateway.http_port, tls_gateway.tokens, "https", client_context(tmp_path, pki, "H44010100001"))
    status, answer = hospital.post(envelope("2207", "H44010100001", bill_input()), token=None)
    assert status == 200 and answer["output"]["setlinfo"]["setl_id"]
    status, answer = hospital.post(envelope("2207", "H44030100001", bill_input(psn_no="44030000000000000001", insuplc="440300")),
                                   token=None)
    assert status == 403 and answer["err_detail"]["reason"] == "NOT_YOUR_INSTITUTION"
    # a token naming another caller than the certificate is refused
    status, answer = hospital.post(envelope("2207", "H44010100001", bill_input()), token=tls_gateway.tokens.get("H44030100001"))
    assert status == 403
    operator = GatewayClient(tls_gateway.http_port, tls_gateway.tokens, "https", client_context(tmp_path, pki, "operator:alice"))
    assert operator.post(envelope("2207", "H44010100001", bill_input()), token=None)[0] == 403


def test_without_a_client_certificate_there_is_no_answer(tls_gateway, pki, tmp_path):  # noqa: F811
    anonymous = GatewayClient(tls_gateway.http_port, tls_gateway.tokens, "https", client_context(tmp_path, pki, None))
    with pytest.raises(aiohttp.ClientError):
        anonymous.post(envelope("2207", "H44010100001", bill_input()))
    plain = GatewayClient(tls_gateway.http_port, tls_gateway.tokens)
    with pytest.raises(aiohttp.ClientError):
        plain.post(envelope("2207", "H44010100001", bill_input()))

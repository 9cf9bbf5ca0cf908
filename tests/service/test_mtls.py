"""Mutual TLS, the production option: certificates generated here (a CA, a
server certificate for 127.0.0.1, client certificates naming an institution
or an operator); the client certificate is the credential."""

from __future__ import annotations

import datetime as dt
import ipaddress

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medsettle.cli import main
from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.server.tls import TlsFiles

from conftest import ServeProcess, ServerThread, issue_token

NOW = dt.datetime.now(dt.timezone.utc)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _certificate(common_name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
                 server: bool = False, sans: list[x509.GeneralName] | None = None,
                 ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder().subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pki():
    ca = _certificate("medsettle test CA", None)
    rogue_ca = _certificate("someone else's CA", None)
    server_cert, server_key = _certificate("medsettle server", ca, server=True)
    return {
        "ca": _pem(ca[0]),
        "server": TlsFiles(_pem(server_cert), _pem_key(server_key), _pem(ca[0])),
        "clients": {cn: _certificate(cn, ca) for cn in ("H44010100001", "operator:alice", "channel only")},
        "rogue": _certificate("H44010100001", rogue_ca),
        "san": {
            "hospital": _certificate("his gateway", ca, sans=[
                x509.DNSName("his-gateway.example"), x509.UniformResourceIdentifier("urn:medsettle:institution:H44010100001")]),
            "operator": _certificate("ops desk", ca, sans=[x509.UniformResourceIdentifier("urn:medsettle:operator:bob")]),
            "two callers": _certificate("medsettle client", ca, sans=[
                x509.UniformResourceIdentifier("urn:medsettle:institution:H44010100001"),
                x509.UniformResourceIdentifier("urn:medsettle:institution:H44030100001")]),
            "host-named": _certificate("his-gw.example", ca, sans=[
                x509.DNSName("his-gw.example"), x509.UniformResourceIdentifier("urn:medsettle:institution:H44010100001")]),
        },
    }


@pytest.fixture
def tls_server(db_path, clock, pki):
    running = ServerThread(db_path, clock, tls=pki["server"]).start()
    yield running
    running.stop()


def _client(target: str, ca: bytes, cert_key=None, token: str | None = None) -> SettlementClient:  # type: ignore[no-untyped-def]
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=_pem_key(cert_key[1]) if cert_key else None,
        certificate_chain=_pem(cert_key[0]) if cert_key else None,
    )
    return SettlementClient(target, token=token, channel_credentials=creds, retries=0, deadline_s=5.0)


@pytest.mark.parametrize("named_by", ["common name", "URI subject alternative name"])
def test_a_client_certificate_is_the_callers_credential(tls_server, pki, bill, named_by):
    """The certificate names the institution or the operator, by its CN or by
    a URI SAN (the SAN hospital's certificate also has a DNS SAN: a host)."""
    hospital_cert, operator_cert = (
        (pki["clients"]["H44010100001"], pki["clients"]["operator:alice"]) if named_by == "common name"
        else (pki["san"]["hospital"], pki["san"]["operator"]))
    with _client(tls_server.target, pki["ca"], hospital_cert) as hospital:
        settled = hospital.settle(bill())  # no token: the certificate names the institution
        assert settled.fixmedins_code == "H44010100001"
        assert hospital.get("H44010100001", setl_id=settled.setl_id) == settled
        with pytest.raises(CallRefused) as refused:
            hospital.settle(bill(code="H44030100001", psn_no="44030000000000000001", insuplc="440300"))
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    with _client(tls_server.target, pki["ca"], operator_cert) as operator:
        assert operator.get("H44010100001", setl_id=settled.setl_id) == settled
        with pytest.raises(CallRefused) as refused:
            operator.settle(bill())
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_a_certificate_naming_two_callers_is_refused_even_with_a_token(tls_server, pki, bill):
    token = issue_token(tls_server.db_path, "H44030100001")
    other = bill(code="H44030100001", psn_no="44030000000000000001", insuplc="440300")
    for with_token in (None, token):
        with _client(tls_server.target, pki["ca"], pki["san"]["two callers"], token=with_token) as caller:
            with pytest.raises(CallRefused) as refused:
                caller.settle(other)
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "names 2 callers" in refused.value.message
    assert tls_server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0


def test_a_host_named_certificate_is_bound_to_the_caller_its_san_names(tls_server, pki, bill):
    """Its CN looks like a code but is a host's name: the URI SAN names the
    caller, and a token for another institution is refused with it."""
    with _client(tls_server.target, pki["ca"], pki["san"]["host-named"]) as hospital:
        assert hospital.settle(bill()).fixmedins_code == "H44010100001"
    token = issue_token(tls_server.db_path, "H44030100001")
    other = bill(code="H44030100001", psn_no="44030000000000000001", insuplc="440300")
    with _client(tls_server.target, pki["ca"], pki["san"]["host-named"], token=token) as caller:
        with pytest.raises(CallRefused) as refused:
            caller.settle(other)
        assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_INSTITUTION")


@pytest.mark.parametrize("certificate, token_for, allowed", [
    ("H44010100001", "H44010100001", True),
    ("H44010100001", "H44030100001", False),  # one hospital's certificate, another's token
    ("operator:alice", "H44030100001", False),
    ("channel only", "H44030100001", True),  # a certificate naming no caller: the token decides
])
def test_a_token_over_mtls_must_name_the_caller_the_certificate_names(tls_server, pki, bill, certificate, token_for, allowed):
    token = issue_token(tls_server.db_path, token_for)
    request = bill() if token_for == "H44010100001" else bill(code=token_for, psn_no="44030000000000000001", insuplc="440300")
    with _client(tls_server.target, pki["ca"], pki["clients"][certificate], token=token) as caller:
        if allowed:
            assert caller.settle(request).fixmedins_code == token_for
            return
        with pytest.raises(CallRefused) as refused:
            caller.settle(request)
    assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_INSTITUTION")
    assert "client certificate" in refused.value.message
    assert tls_server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0


@pytest.mark.parametrize("who", ["no certificate", "certificate from another CA"])
def test_without_a_certificate_of_the_ca_no_call_gets_through(tls_server, pki, bill, who):
    cert_key = None if who == "no certificate" else pki["rogue"]
    with _client(tls_server.target, pki["ca"], cert_key) as stranger:
        with pytest.raises(CallRefused) as refused:
            stranger.settle(bill())
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    assert tls_server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0


def test_medsettle_serve_with_tls_options(tmp_path, pki, bill):
    files = {}
    for name, data in (("cert", pki["server"].cert_pem), ("key", pki["server"].key_pem), ("ca", pki["ca"])):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(data)
    server = ServeProcess(tmp_path / "ledger.db", tmp_path, "--clock", "2026-10-15T10:30:00+08:00",
                          "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]),
                          "--tls-client-ca", str(files["ca"])).start()
    try:
        with _client(server.target, pki["ca"], pki["clients"]["H44010100001"]) as hospital:
            assert hospital.settle(bill()).setl_id == "S000000000001"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("args, message", [
    (["--tls-cert", __file__], "go together"),
    (["--writer-queue", "4", "--writer-batch", "8"], "--writer-batch must be at most --writer-queue"),
    (["--max-concurrent-rpcs", "0"], "--max-concurrent-rpcs"),
])
def test_serve_refuses_inconsistent_bounds_and_tls_options(tmp_path, args, message):
    out = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "x.db"), *args])
    assert out.exit_code == 2 and message in out.output

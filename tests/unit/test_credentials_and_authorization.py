"""Credentials on a real SQLite file and the authorization decision, pure."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsettle.ledger.storage.credentials import CredentialError, CredentialStore, Role, token_sha256
from medsettle.server.auth import (
    CURRENT_PRINCIPAL,
    Authorizer,
    Principal,
    principal_of_certificate,
    AmbiguousCertificate,
    bearer_token,
    certificate_names,
    principal_of_certificate_names,
)

AT = dt.datetime(2026, 10, 15, 2, 30, tzinfo=dt.timezone.utc)
CODES = st.from_regex(r"[A-Z][0-9]{11}", fullmatch=True)


def test_issue_stores_only_the_hash_and_revoke_removes_it_from_the_live_table(tmp_path):
    with CredentialStore(tmp_path / "c.db") as store:
        first, token = store.issue(Role.INSTITUTION, "H44010100001", "his", AT)
        operator, operator_token = store.issue(Role.OPERATOR, "", "ops", AT)
        assert token != operator_token and token.startswith("mst_") and len(token) > 40
        live = store.active_by_hash()
        assert live[hashlib.sha256(token.encode()).hexdigest()].fixmedins_code == "H44010100001"
        assert live[token_sha256(operator_token)].role is Role.OPERATOR
        store.revoke(first.cred_id, AT + dt.timedelta(days=1))
        assert token_sha256(token) not in store.active_by_hash()
        assert [c.cred_id for c in store.list()] == [operator.cred_id]
        revoked = store.list(include_revoked=True)[0]
        assert revoked.revoked_at == AT + dt.timedelta(days=1)
        with pytest.raises(CredentialError, match="already revoked"):
            store.revoke(first.cred_id, AT)
        with pytest.raises(CredentialError, match="no credential"):
            store.revoke(999, AT)
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("c.db*"))  # the file and any WAL left
    assert token.encode() not in raw and operator_token.encode() not in raw


@pytest.mark.parametrize("role, code, label, field", [
    (Role.INSTITUTION, "", "x", "fixmedins_code"),
    (Role.INSTITUTION, "H 1", "x", "fixmedins_code"),
    (Role.INSTITUTION, "H" * 31, "x", "fixmedins_code"),
    (Role.OPERATOR, "H44010100001", "x", "fixmedins_code"),
    (Role.INSTITUTION, "H44010100001", "", "label"),
    (Role.INSTITUTION, "H44010100001", "x" * 101, "label"),
])
def test_issue_refuses_by_field(tmp_path, role, code, label, field):
    with CredentialStore(tmp_path / "c.db") as store:
        with pytest.raises(CredentialError, match=field):
            store.issue(role, code, label, AT)
        assert store.list(include_revoked=True) == []


def _denial(principal: Principal | None, code: str, write: bool, required: bool = True) -> str | None:
    reset = CURRENT_PRINCIPAL.set(principal)
    try:
        return Authorizer(required).denial(code, write)
    finally:
        CURRENT_PRINCIPAL.reset(reset)


@given(own=CODES, asked=CODES | st.just(""), write=st.booleans())
def test_an_institution_acts_exactly_for_its_own_code(own, asked, write):
    principal = Principal(Role.INSTITUTION, own, "token:1")
    assert (_denial(principal, asked, write) is None) == (asked == own)


@given(asked=CODES | st.just(""), write=st.booleans())
def test_an_operator_reads_everything_and_writes_nothing(asked, write):
    assert (_denial(Principal(Role.OPERATOR, "", "mtls"), asked, write) is None) == (not write)


def test_no_caller_is_denied_only_when_authentication_is_required():
    assert _denial(None, "H44010100001", True) is not None
    assert _denial(None, "H44010100001", True, required=False) is None


@pytest.mark.parametrize("common_name, expected", [
    ("H44010100001", Principal(Role.INSTITUTION, "H44010100001", "mtls")),
    ("operator:alice", Principal(Role.OPERATOR, "", "mtls")),
    ("operator:", None),
    ("medsettle server", None),
    ("", None),
])
def test_certificate_common_names(common_name, expected):
    assert principal_of_certificate(common_name) == expected


HOSPITAL_CALLER = Principal(Role.INSTITUTION, "H44010100001", "mtls")
OPERATOR_CALLER = Principal(Role.OPERATOR, "", "mtls")


@pytest.mark.parametrize("common_names, san_uris, expected", [
    (["medsettle client"], ["urn:medsettle:institution:H44010100001"], HOSPITAL_CALLER),
    (["his-gw.example"], ["urn:medsettle:institution:H44010100001"], HOSPITAL_CALLER),  # a code-shaped CN: a label
    (["H44030100001"], ["urn:medsettle:institution:H44010100001"], HOSPITAL_CALLER),  # our SANs decide, not the CN
    ([], ["urn:medsettle:operator:alice"], OPERATOR_CALLER),
    (["H44010100001"], ["urn:medsettle:operator:alice"], OPERATOR_CALLER),
    (["operator:alice", "operator:bob"], [], OPERATOR_CALLER),  # operators act alike
    (["H44010100001"], ["spiffe://hospital/his", "https://his.example/H44030100001"], HOSPITAL_CALLER),  # not ours
    (["medsettle client"], ["urn:other:institution:H44010100001"], None),
    (["H44010100001"], ["urn:medsettle:institution:", "urn:medsettle:institution:H4401 0100001"], None),
    (["medsettle client"], ["urn:medsettle:operator:"], None),
    (["H44010100001\x00.evil"], ["urn:medsettle:institution:H44010100001\x00.evil"], None),  # whole values
])
def test_a_certificate_names_its_caller_by_uri_san_else_by_cn(common_names, san_uris, expected):
    assert principal_of_certificate_names(common_names, san_uris) == expected


@pytest.mark.parametrize("common_names, san_uris", [
    (["medsettle client"], ["urn:medsettle:institution:H44010100001", "urn:medsettle:institution:H44030100001"]),
    ([], ["urn:medsettle:institution:H44010100001", "urn:medsettle:operator:alice"]),
    (["H44010100001", "H44030100001"], []),  # two CN attributes
])
def test_a_certificate_naming_two_callers_is_refused(common_names, san_uris):
    with pytest.raises(AmbiguousCertificate, match="names 2 callers"):
        principal_of_certificate_names(common_names, san_uris)


def test_certificate_names_are_read_whole_from_the_certificate():
    """Every CN attribute and every URI SAN, NUL bytes and all (gRPC's own
    view would show only the first CN, cut at the NUL)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "H44010100001\x00.evil"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "his gateway")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("his-gw.example"), x509.UniformResourceIdentifier("urn:medsettle:institution:H1\x00.evil"),
            x509.UniformResourceIdentifier("spiffe://hospital/his")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    names = certificate_names(certificate.public_bytes(serialization.Encoding.PEM))
    assert names == (("H44010100001\x00.evil", "his gateway"),
                     ("urn:medsettle:institution:H1\x00.evil", "spiffe://hospital/his"))
    assert principal_of_certificate_names(*names) is None


@pytest.mark.parametrize(("value", "token"), [
    ("Bearer mst_a", "mst_a"), ("bearer mst_a", "mst_a"), ("BEARER  mst_a ", "mst_a"),  # the scheme is case-insensitive
    ("Bearer ", None), ("Basic mst_a", None), ("Bearermst_a", None), ("", None),
])
def test_the_bearer_scheme_is_read_in_any_case(value: str, token: str | None) -> None:
    assert bearer_token([("authorization", value)]) == token

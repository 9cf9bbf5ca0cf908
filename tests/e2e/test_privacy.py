"""Privacy: a full service session as a real process with debug JSON logs;
neither the logs nor any error message a caller receives contain a sample
person number or name in clear, or a bearer token."""

from __future__ import annotations

import grpc
import pytest

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.storage.credentials import CredentialStore, Role
from medsettle.server.logs import mask
from medsettle.v1 import settlement_pb2 as pb

from conftest import SETTLE_AT, ServeProcess, make_bill

PERSONS = sample_document()["persons"]
HOSPITAL, OTHER = "H44010100001", "H44030100001"


def refusal_text(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CallRefused) as refused:
        call()
    r = refused.value
    return " ".join([str(r), r.reason, *(f"{f} {d}" for f, d in r.field_violations), *r.metadata.values()])


def test_no_person_number_name_or_token_in_logs_or_errors(tmp_path):
    db = tmp_path / "ledger.db"
    with CredentialStore(db) as store:
        provisioned = store.provision([HOSPITAL, OTHER], "privacy-test", SETTLE_AT)
        revoked, revoked_token = store.issue(Role.INSTITUTION, HOSPITAL, "to-revoke", SETTLE_AT)
        store.revoke(revoked.cred_id, SETTLE_AT)
    tokens = provisioned.tokens
    server = ServeProcess(db, tmp_path, "--clock", SETTLE_AT.isoformat(), "--log-level", "debug").start()
    errors: list[str] = []
    try:
        with SettlementClient(server.target, tokens=tokens, retries=0) as client:
            settled = []
            for i, p in enumerate(PERSONS):  # every sample person settles (local and cross-region)
                settled.append(client.settle(make_bill(code=HOSPITAL, psn_no=p["psn_no"], insuplc=p["insuplc_admdvs"],
                                                       insutype=p["insutype"], msgid=f"PRIV-{i}")))
            first = PERSONS[0]
            bad = make_bill(psn_no=first["psn_no"] + "!")  # a real number, mistyped
            errors.append(refusal_text(lambda: client.settle(bad)))
            errors.append(refusal_text(lambda: client.settle(make_bill(psn_no=first["name"]))))
            errors.append(refusal_text(lambda: client.settle(make_bill(psn_no="99999999999999999999"))))
            errors.append(refusal_text(lambda: client.settle(make_bill(psn_no=first["psn_no"], insutype=390))))
            conflicting = make_bill(psn_no=first["psn_no"], msgid="PRIV-0", lines=[("S0001", 2, 100)])
            errors.append(refusal_text(lambda: client.settle(conflicting)))
            errors.append(refusal_text(lambda: client.pre_settle(make_bill(psn_no=PERSONS[1]["psn_no"], insutype=310))))
            client.reverse("PRIV-RV-1", HOSPITAL, settled[0].setl_id)
            errors.append(refusal_text(lambda: client.reverse("PRIV-RV-2", HOSPITAL, settled[0].setl_id)))
            errors.append(refusal_text(lambda: client.get(HOSPITAL, msgid="PRIV-NONE")))
            stream = list(client.settle_stream([make_bill(psn_no=first["psn_no"] + "0"), make_bill(psn_no=first["psn_no"])]))
            errors.extend(f"{r.status.message} {[v.description for v in r.status.field_violations]}" for r in stream)
            assert list(client.list_settlements(HOSPITAL, "2026-10"))
        with SettlementClient(server.target, token=tokens[HOSPITAL], retries=0) as hospital:
            errors.append(refusal_text(lambda: hospital.settle(make_bill(code=OTHER, psn_no=first["psn_no"]))))
        for token in ("mst_guessed", revoked_token):
            with SettlementClient(server.target, token=token, retries=0) as stranger:
                errors.append(refusal_text(lambda: stranger.settle(make_bill(psn_no=first["psn_no"]))))
    finally:
        assert server.stop() == 0
    logs = server.logs()
    secrets = [p["psn_no"] for p in PERSONS] + [p["name"] for p in PERSONS] + list(tokens.values()) + \
        [provisioned.operator_token, revoked_token]
    text = "\n".join(errors)
    assert [s for s in secrets if s in logs] == []
    assert [s for s in secrets if s in text] == []
    # the session really logged what it did, masked
    assert mask(first["psn_no"]) in logs and '"event": "settled"' in logs
    for event in ("refused", "permission denied", "unauthenticated", "reversed"):
        assert f'"event": "{event}"' in logs, event
    assert "UNKNOWN_PERSON" in text and "PERMISSION_DENIED" in text and "UNAUTHENTICATED" in text


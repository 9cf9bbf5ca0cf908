"""Authentication and authorization through a real channel: who may call,
and for which institution. Nothing is written for a refused call."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medsettle.cli import main
from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.storage.credentials import CredentialStore
from medsettle.server.auth import CredentialCache
from medsettle.v1 import settlement_pb2 as pb

from conftest import SETTLE_AT, ServerThread, issue_token

HOSPITAL, OTHER = "H44010100001", "H44030100001"


def stored(server) -> int:
    return server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]


def refused_code(call) -> grpc.StatusCode:
    with pytest.raises(CallRefused) as refused:
        call()
    return refused.value.code


@pytest.mark.parametrize("token", [None, "", "mst_not-a-real-token", "Bearer"])
def test_missing_or_unknown_credential_is_unauthenticated(server, bill, token):
    with SettlementClient(server.target, token=token, retries=0) as anonymous:
        assert refused_code(lambda: anonymous.settle(bill())) == grpc.StatusCode.UNAUTHENTICATED
        assert refused_code(lambda: anonymous.get(HOSPITAL, msgid="M1")) == grpc.StatusCode.UNAUTHENTICATED
        assert refused_code(lambda: list(anonymous.list_settlements(HOSPITAL, "2026-10"))) == grpc.StatusCode.UNAUTHENTICATED
    assert stored(server) == 0


def test_health_and_reflection_need_no_credential(server):
    with grpc.insecure_channel(server.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_an_institution_acts_only_for_its_own_code(server, client, bill):
    theirs = client.settle(bill(code=OTHER, psn_no="44030000000000000001", insuplc="440300"))
    mine = client.settle(bill())
    with SettlementClient(server.target, token=server.tokens[HOSPITAL], retries=0) as hospital:
        other_bill = bill(code=OTHER, psn_no="44030000000000000001", insuplc="440300")
        denied = {
            "Settle": lambda: hospital.settle(other_bill),
            "PreSettle": lambda: hospital.pre_settle(other_bill),
            "Reverse": lambda: hospital.reverse("RV-X-1", OTHER, theirs.setl_id),
            "GetSettlement": lambda: hospital.get(OTHER, setl_id=theirs.setl_id),
            "ListSettlements": lambda: list(hospital.list_settlements(OTHER, "2026-10")),
            "ListSettlements(all)": lambda: list(hospital.list_settlements("", "2026-10")),
            "ReconcileTotals": lambda: hospital.reconcile_totals(OTHER, "2026-10", 11, pb.Totals()),
        }
        assert {name: refused_code(call) for name, call in denied.items()} == {
            name: grpc.StatusCode.PERMISSION_DENIED for name in denied
        }
        # and its own business goes through on the same credential
        assert hospital.get(HOSPITAL, setl_id=mine.setl_id) == mine
        assert [r.setl_id for r in hospital.list_settlements(HOSPITAL, "2026-10")] == [mine.setl_id]
    assert stored(server) == 2
    assert client.get(OTHER, setl_id=theirs.setl_id) == theirs  # not reversed


def test_a_stream_item_for_another_institution_is_denied_alone(server, bill):
    requests = [bill(), bill(code=OTHER, psn_no="44030000000000000001", insuplc="440300"), bill()]
    with SettlementClient(server.target, token=server.tokens[HOSPITAL], retries=0) as hospital:
        responses = list(hospital.settle_stream(requests))
    assert [r.status.code for r in responses] == [0, grpc.StatusCode.PERMISSION_DENIED.value[0], 0]
    assert responses[1].status.reason == "NOT_YOUR_INSTITUTION"
    assert stored(server) == 2


def test_an_operator_reads_across_institutions_but_does_not_settle(server, client, bill):
    settled = [client.settle(bill()), client.settle(bill(code=OTHER, psn_no="44030000000000000001", insuplc="440300"))]
    with SettlementClient(server.target, token=server.operator_token, retries=0) as operator:
        assert [operator.get(s.fixmedins_code, setl_id=s.setl_id) for s in settled] == settled
        assert {r.setl_id for r in operator.list_settlements("", "2026-10")} == {s.setl_id for s in settled}
        assert operator.reconcile_totals(OTHER, "2026-10", 11, pb.Totals()).platform_totals.setl_cnt == 1
        assert refused_code(lambda: operator.settle(bill())) == grpc.StatusCode.PERMISSION_DENIED
        assert refused_code(lambda: operator.pre_settle(bill())) == grpc.StatusCode.PERMISSION_DENIED
        assert refused_code(lambda: operator.reverse("RV-OP-1", HOSPITAL, settled[0].setl_id)) == grpc.StatusCode.PERMISSION_DENIED
    assert stored(server) == 2


def test_tokens_are_stored_only_as_hashes(server):
    token = server.tokens[HOSPITAL]
    conn = server.service.store.reader()
    rows = conn.execute("SELECT * FROM credentials").fetchall()
    text = repr(rows)
    assert token not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text


def test_rotation_without_restart_through_the_cli(db_path, clock, bill):
    cache = CredentialCache(db_path, ttl_s=0.2)
    running = ServerThread(db_path, clock, credentials=cache).start()
    try:
        runner = CliRunner()
        issued = runner.invoke(main, ["credentials", "issue", "--db", str(db_path), "--code", HOSPITAL, "--label", "his-2027"])
        assert issued.exit_code == 0, issued.output
        new_token = issued.stdout.strip().splitlines()[-1]
        listed = runner.invoke(main, ["credentials", "list", "--db", str(db_path)])
        assert "his-2027" in listed.output and new_token not in listed.output
        old_id = next(line.split("│")[1].strip() for line in listed.output.splitlines()
                      if "tests" in line and HOSPITAL in line)
        with SettlementClient(running.target, token=new_token, retries=0) as rotated, \
                SettlementClient(running.target, token=running.tokens[HOSPITAL], retries=0) as old:
            assert _eventually(lambda: rotated.settle(bill()).setl_id)  # the new token works once reloaded
            assert old.settle(bill()).setl_id  # the old one still works until revoked
            revoked = runner.invoke(main, ["credentials", "revoke", "--db", str(db_path), old_id])
            assert revoked.exit_code == 0, revoked.output
            assert _eventually(lambda: outcome(lambda: old.settle(bill())) == grpc.StatusCode.UNAUTHENTICATED)
            assert rotated.settle(bill()).setl_id
        again = runner.invoke(main, ["credentials", "revoke", "--db", str(db_path), old_id])
        assert again.exit_code == 1 and "already revoked" in again.output
    finally:
        running.stop()


def test_issue_refuses_a_malformed_code_by_name(server, db_path):
    out = CliRunner().invoke(main, ["credentials", "issue", "--db", str(db_path), "--code", "bad code!", "--label", "x"])
    assert out.exit_code == 2 and "fixmedins_code" in out.output


def outcome(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        call()
    except CallRefused as refused:
        return refused.code
    return grpc.StatusCode.OK


def _eventually(check, attempts: int = 50):  # type: ignore[no-untyped-def]
    """The check's first truthy result while the server reloads its table (a bounded wait)."""
    for _ in range(attempts):
        try:
            result = check()
        except CallRefused:
            result = None
        if result:
            return result
        time.sleep(0.1)
    return check()


def test_a_credential_issued_while_the_server_runs_works_on_its_first_call(db_path, clock, bill):
    running = ServerThread(db_path, clock, credentials=CredentialCache(db_path)).start()  # as `serve` builds it
    try:
        with SettlementClient(running.target, token="mst_not-issued", retries=0) as guess:
            assert refused_code(lambda: guess.settle(bill())) == grpc.StatusCode.UNAUTHENTICATED  # the table is fresh
        issued = CliRunner().invoke(main, ["credentials", "issue", "--db", str(db_path), "--code", HOSPITAL,
                                           "--label", "issued-live"])
        assert issued.exit_code == 0, issued.output
        with SettlementClient(running.target, token=issued.stdout.strip(), retries=0) as fresh:
            assert fresh.settle(bill()).setl_id
    finally:
        running.stop()


def test_unknown_tokens_beyond_the_lookup_budget_are_told_when_a_new_one_works(db_path, clock, bill):
    cache = CredentialCache(db_path, miss_lookups_per_s=0.01)  # one look-up, then one per 100 s
    running = ServerThread(db_path, clock, credentials=cache).start()
    try:
        with SettlementClient(running.target, token="mst_guess-1", retries=0) as guess:
            assert refused_code(lambda: guess.settle(bill())) == grpc.StatusCode.UNAUTHENTICATED  # looked up
        token = CliRunner().invoke(main, ["credentials", "issue", "--db", str(db_path), "--code", HOSPITAL,
                                          "--label", "issued-live"]).stdout.strip()
        with SettlementClient(running.target, token=token, retries=0) as fresh:
            with pytest.raises(CallRefused) as refused:
                fresh.settle(bill())
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "issued just now is known within 5 s: retry" in refused.value.message
        assert cache.not_looked_up == 1
    finally:
        running.stop()


def test_a_credential_revoked_while_it_is_looked_up_stops_at_the_next_reload(db_path):
    """A look-up that started before a revocation and ends after a reload
    must not put the revoked token back into the reloaded table (it would
    work for a whole TTL more)."""
    class SlowLookUp(CredentialCache):
        def __init__(self) -> None:
            super().__init__(db_path, ttl_s=3600)
            self.read, self.go_on = threading.Event(), threading.Event()

        def _read_one(self, digest: str):  # type: ignore[no-untyped-def]
            found = super()._read_one(digest)  # still active here
            self.read.set()
            self.go_on.wait(10)
            return found

    async def race() -> tuple[object, object]:
        issue_token(db_path, OTHER)  # a ledger with credentials
        cache = SlowLookUp()
        await cache.reload()  # the table, before the credential exists
        token = issue_token(db_path, HOSPITAL)  # labelled "tests"
        first_call = asyncio.ensure_future(cache.principal(token))
        await asyncio.to_thread(cache.read.wait, 10)
        with CredentialStore(db_path) as store:
            cred_id = next(c.cred_id for c in store.list() if c.fixmedins_code == HOSPITAL)
            store.revoke(cred_id, SETTLE_AT)
        await cache.reload()  # as the TTL's reload does; the look-up is still under way
        cache.go_on.set()
        return await first_call, await cache.principal(token)

    during, after = asyncio.run(race())
    assert during is not None  # the call that began before the revocation
    assert after is None  # revoked, and the table was read after the revocation

"""Faults of a PostgreSQL-backed deployment, with real processes: the
database stopped under load (immediate shutdown) and started again; one of
two servers killed with SIGKILL under load; a connection lost during the
commit. Each ends with every acknowledged settlement stored exactly once
and the ledger's invariants checked with SQL."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Iterator

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.clock import FixedClock
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.port import StorageError
from medsettle.ledger.storage.postgres import PostgresLedgerStore
from medsettle.ledger.verify import verify_database

from conftest import SETTLE_AT, ServeProcess, make_bill
from pg_checks import ledger_invariant_breaks
from pg_server import PostgresServer, throwaway_server

CLOCK = "2026-10-15T10:30:00+08:00"
VISITS = [("H44010100001", "44010000000000000001", "440100", 310),
          ("H44010100002", "44010000000000000002", "440100", 390),
          ("H44010100002", "13010000000000000001", "130100", 310)]
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own: it is stopped and started."""
    with throwaway_server() as server:
        yield server


def initial_balances() -> dict[str, int]:
    return {p.psn_no: p.acct_balc_fen for p in parse_document(sample_document())[1]}


class Load:
    """Client threads settling new bills until stopped; what was acknowledged,
    what was refused (by status and reason) and not yet acknowledged."""

    def __init__(self, targets: list[str], tokens: dict[str, str], threads: int = 3) -> None:
        self.targets, self.tokens = targets, tokens
        self.requests: dict[str, object] = {}
        self.acked: dict[str, str] = {}
        self.unacked: set[str] = set()
        self.refusals: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _run(self, i: int) -> None:
        clients = [SettlementClient(t, tokens=self.tokens, deadline_s=5.0, retries=0) for t in self.targets]
        n = 0
        while not self.stop.is_set():
            n += 1
            code, psn_no, insuplc, insutype = VISITS[n % len(VISITS)]
            request = make_bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype,
                                msgid=f"L{i}{n:06d}", lines=[("S0001", 1, 1000 + n % 500)])
            with self.lock:
                self.requests[request.msgid] = request
            self.send(clients[n % len(clients)], request.msgid)
            if request.msgid in self.unacked:
                time.sleep(0.02)
        for client in clients:
            client.close()

    def send(self, client: SettlementClient, msgid: str) -> None:
        try:
            result = client.settle(self.requests[msgid])  # type: ignore[arg-type]
        except CallRefused as refused:
            with self.lock:
                self.refusals[(refused.code.name, refused.reason)] += 1
                self.unacked.add(msgid)
            return
        with self.lock:
            self.acked[msgid] = result.setl_id
            self.unacked.discard(msgid)

    def retry_unacked(self, target: str) -> None:
        """The callers' retries, with the same msgids."""
        with SettlementClient(target, tokens=self.tokens, deadline_s=20.0, retries=5) as client:
            for msgid in sorted(self.unacked):
                self.send(client, msgid)
        assert not self.unacked, sorted(self.unacked)[:5]


def health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def provision(url: str) -> dict[str, str]:
    from medsettle.ledger.storage.credentials import CredentialStore

    with CredentialStore(url) as store:
        return store.provision(sorted({v[0] for v in VISITS}), "tests", SETTLE_AT).tokens


def assert_exactly_once(url: str, load: Load) -> None:
    assert ledger_invariant_breaks(url, load.acked, initial_balances()) == []
    assert verify_database(url).ok


def test_database_stopped_under_load_answers_unavailable_and_resumes_without_restart(
        own_pg: PostgresServer, tmp_path: Path) -> None:
    url = own_pg.create_database()
    server = ServeProcess(url, tmp_path, "--clock", CLOCK).start()  # type: ignore[arg-type]
    tokens = provision(url)
    try:
        with Load([server.target], tokens) as load:
            wait_for(lambda: load.acked_count() >= 20, 60, "settlements before the stop")
            own_pg.stop("immediate")
            wait_for(lambda: health(server.target) == health_pb2.HealthCheckResponse.NOT_SERVING, 15, "NOT_SERVING")
            refused_before = sum(load.refusals.values())
            wait_for(lambda: sum(load.refusals.values()) > refused_before + 3, 30, "refusals while down")
            own_pg.start()
            wait_for(lambda: health(server.target) == health_pb2.HealthCheckResponse.SERVING, 30, "SERVING again")
            resumed_from = load.acked_count()
            wait_for(lambda: load.acked_count() >= resumed_from + 20, 60, "settlements after the restart")
        assert set(load.refusals) <= {("UNAVAILABLE", "STORAGE_UNAVAILABLE")}, load.refusals
        load.retry_unacked(server.target)
    finally:
        assert server.stop() == 0, server.logs()[-3000:]
    assert_exactly_once(url, load)


def test_one_of_two_servers_killed_under_load_the_other_keeps_serving(pg_url: str, tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    servers = [ServeProcess(pg_url, d, "--clock", CLOCK).start() for d in dirs]  # type: ignore[arg-type]
    tokens = provision(pg_url)
    victim, survivor = servers
    try:
        with Load([s.target for s in servers], tokens, threads=4) as load:
            wait_for(lambda: load.acked_count() >= 40, 60, "settlements on both servers")
            victim.kill()
            after_kill = load.acked_count()
            wait_for(lambda: load.acked_count() >= after_kill + 40, 60, "the survivor settling on")
        assert {code for code, _ in load.refusals} <= {c.name for c in RETRYABLE}, load.refusals
        load.retry_unacked(survivor.target)
    finally:
        assert survivor.stop() == 0, survivor.logs()[-3000:]
    assert_exactly_once(pg_url, load)


def test_a_connection_lost_during_commit_settles_exactly_once_on_retry(pg_url: str) -> None:
    """The commit's outcome is unknown to the server (the connection drops as
    COMMIT is sent, after the database committed): the caller is told to
    retry with the same msgid, and the retry answers the stored settlement."""
    clock = FixedClock(SETTLE_AT)
    store = PostgresLedgerStore(pg_url)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    real_commit = PostgresLedgerStore.commit

    def commit_then_lose_the_connection(self: PostgresLedgerStore) -> None:
        real_commit(self)  # the database has it ...
        self._writer.conn.close()  # type: ignore[union-attr]  # ... the answer never arrives
        raise StorageError("the connection to the database was lost during COMMIT")

    bill = make_bill(msgid="LOST-1")
    from medsettle.server.convert import bill_from_pb  # the server's own conversion

    command = SettleCommand(bill_from_pb(bill), persist=True)
    store.commit = commit_then_lose_the_connection.__get__(store)  # type: ignore[method-assign]
    (first,) = processor.run_batch([command])
    assert getattr(first, "reason", None) is not None and first.reason.name == "STORAGE_UNAVAILABLE"
    assert "retry with the same msgid" in first.message
    del store.commit
    (retried,) = processor.run_batch([command])
    (again,) = processor.run_batch([command])
    assert retried.setl_id == again.setl_id
    store.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM settlements WHERE msgid = 'LOST-1'").fetchone() == (1,)
    assert verify_database(pg_url).ok

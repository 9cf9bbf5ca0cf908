"""Bounds, back-pressure, deadlines and storage faults through a real server.

The writer is held up by a real SQLite write lock taken from the test (BEGIN
IMMEDIATE on another connection), so calls are really in flight; disk full
is SQLite's own SQLITE_FULL (max_page_count on the writer's connection).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Iterator

import grpc
import pytest

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.storage.writer import WriterLimits
from medsettle.ledger.verify import verify_database
from medsettle.server.app import ServerLimits
from medsettle.v1 import settlement_pb2_grpc as pb_grpc

from conftest import ServerThread, make_bill

HOSPITAL = "H44010100001"
LOCK_WAIT_S = 3.0  # below the writer's 5 s busy timeout: a held lock delays, it does not fail


@contextlib.contextmanager
def write_lock(db_path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def count(server, sql: str = "SELECT COUNT(*) FROM settlements", *args: object) -> int:  # type: ignore[no-untyped-def]
    return server.service.store.reader().execute(sql, args).fetchone()[0]


def wait_until(condition, timeout_s: float = LOCK_WAIT_S) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def code_of(future) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        future.result()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK


@pytest.fixture
def started(db_path, clock):  # type: ignore[no-untyped-def]
    """Starts a server with given limits; stops it after the test."""
    servers = []

    def start(**kwargs: object) -> ServerThread:
        servers.append(ServerThread(db_path, clock, **kwargs).start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def settle_futures(server, bills, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    channel = grpc.insecure_channel(server.target)
    stub = pb_grpc.SettlementServiceStub(channel)
    metadata = [("authorization", f"Bearer {server.tokens[HOSPITAL]}")]
    return channel, [stub.Settle.future(b, timeout=timeout_s, metadata=metadata) for b in bills]


def test_a_message_above_the_limit_is_refused_and_nothing_stored(client, bill, server):
    oversized = bill()
    oversized.ecert_token = "x" * (1 << 20)  # 1 MiB of token: the request exceeds the 1 MiB limit
    with pytest.raises(CallRefused) as refused:
        client.settle(oversized)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert count(server) == 0
    assert client.settle(bill()).setl_id  # and the server carries on


def test_more_fee_lines_than_the_bound_names_the_field(client, bill, server):
    with pytest.raises(CallRefused) as refused:
        client.settle(bill(lines=[("S0001", 1, 10)] * 501))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in refused.value.field_violations] == ["fee_lines"]


def test_calls_beyond_the_concurrency_limit_are_refused_at_once(started, db_path):
    server = started(limits=ServerLimits(max_concurrent_rpcs=4))
    bills = [make_bill() for _ in range(20)]
    with write_lock(db_path):
        channel, futures = settle_futures(server, bills)
        # refused while the lock is still held: overload never waits for the writer
        assert wait_until(lambda: sum(f.done() for f in futures) >= 16)
        refused = [code_of(f) for f in futures if f.done()]
    codes = [code_of(f) for f in futures]
    channel.close()
    assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 16
    assert codes.count(grpc.StatusCode.OK) == 4 and codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 16
    settled = {b.msgid for b, c in zip(bills, codes) if c == grpc.StatusCode.OK}
    stored = {row[0] for row in server.service.store.reader().execute("SELECT msgid FROM settlements")}
    assert stored == settled


def test_a_full_writer_queue_answers_overloaded_and_a_retry_settles_once(started, db_path):
    server = started(writer_limits=WriterLimits(max_batch=1, max_queue=2))
    bills = [make_bill() for _ in range(10)]
    with write_lock(db_path):
        channel, futures = settle_futures(server, bills)
        assert wait_until(lambda: sum(f.done() for f in futures) >= 7)
    codes = [code_of(f) for f in futures]
    channel.close()
    overloaded = [b for b, c in zip(bills, codes) if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    # the writer holds one command (blocked on the lock) or none yet, the queue two
    assert 7 <= len(overloaded) <= 8 and codes.count(grpc.StatusCode.OK) == 10 - len(overloaded)
    assert count(server) == 10 - len(overloaded)
    with SettlementClient(server.target, tokens=server.tokens, retries=0) as retrying:  # one at a time, same msgids
        assert all(retrying.settle(b).msgid == b.msgid for b in overloaded)
    assert count(server) == 10
    assert count(server, "SELECT COUNT(DISTINCT msgid) FROM settlements") == 10


def test_an_expired_call_is_not_settled_or_is_returned_by_its_retry(started, db_path):
    server = started(writer_limits=WriterLimits(max_batch=1, max_queue=16))
    in_writer, queued = make_bill(), make_bill()
    with write_lock(db_path):
        channel, (first,) = settle_futures(server, [in_writer], timeout_s=0.5)
        time.sleep(0.2)  # the idle writer takes the first command at once and waits for the lock
        _, (second,) = settle_futures(server, [queued], timeout_s=0.5)
        # both callers give up while the writer waits for the lock
        assert code_of(first) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert code_of(second) == grpc.StatusCode.DEADLINE_EXCEEDED
    channel.close()
    assert wait_until(lambda: server.service.writer.batches_committed >= 2)
    msgid_count = "SELECT COUNT(*) FROM settlements WHERE msgid = ?"
    # the command the writer held when its caller gave up was settled; the one
    # still queued was dropped: its caller was gone before the writer reached it
    assert count(server, msgid_count, in_writer.msgid) == 1
    assert count(server, msgid_count, queued.msgid) == 0
    stored = server.service.store.get_settlement(HOSPITAL, msgid=in_writer.msgid)
    with SettlementClient(server.target, tokens=server.tokens, retries=0) as retrying:
        assert retrying.settle(in_writer).setl_id == stored.setl_id  # the retry returns it
        assert retrying.settle(queued).setl_id  # the retry settles it now
    assert count(server, msgid_count, in_writer.msgid) == count(server, msgid_count, queued.msgid) == 1


def test_retry_after_an_expired_call_settles_exactly_once(client, bill, server, db_path):
    request = bill()
    with write_lock(db_path):
        with pytest.raises(CallRefused):
            with_deadline = SettlementClient(server.target, tokens=server.tokens, deadline_s=0.3, retries=0)
            with_deadline.settle(request)
    with_deadline.close()
    first = client.settle(request)  # the retry, same msgid
    again = client.settle(request)
    assert first == again
    assert count(server, "SELECT COUNT(*) FROM settlements WHERE msgid = ?", request.msgid) == 1


def test_disk_full_refuses_with_unavailable_writes_nothing_and_recovers(client, bill, server, db_path, capfd):
    client.settle(bill())
    writer_conn = server.service.store._write  # the writer's own connection: max_page_count is per connection
    pages = writer_conn.execute("PRAGMA page_count").fetchone()[0]
    writer_conn.execute(f"PRAGMA max_page_count = {pages}")
    big = bill(lines=[("S0001", 1, 100 + i) for i in range(400)])
    entries_before = count(server, "SELECT COUNT(*) FROM journal_entries")
    try:
        with pytest.raises(CallRefused) as refused:
            client.settle(big)
    finally:
        writer_conn.execute("PRAGMA max_page_count = 1073741823")
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and refused.value.reason == "STORAGE_UNAVAILABLE"
    assert "full" in refused.value.message and "retry with the same msgid" in refused.value.message
    assert count(server) == 1 and count(server, "SELECT COUNT(*) FROM journal_entries") == entries_before
    logged = capfd.readouterr().err
    assert "write failed" in logged and "nothing was written" in logged
    assert "STORAGE_UNAVAILABLE" in logged and "full" in logged
    # the fault cleared: the same msgid settles, once
    settled = client.settle(big)
    assert client.settle(big) == settled and count(server) == 2
    assert verify_database(db_path).ok


def test_a_locked_database_refuses_with_unavailable_and_the_retry_settles_once(client, bill, server, db_path, capfd):
    writer_conn = server.service.store._write
    writer_conn.execute("PRAGMA busy_timeout = 200")  # give up on the lock quickly instead of after 5 s
    request = bill()
    try:
        with write_lock(db_path):
            with pytest.raises(CallRefused) as refused:
                client.settle(request)
    finally:
        writer_conn.execute("PRAGMA busy_timeout = 5000")
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and "locked" in refused.value.message
    assert count(server) == 0
    assert "database is locked" in capfd.readouterr().err
    settled = client.settle(request)
    assert client.settle(request) == settled and count(server) == 1

"""`serve --writer-process`: the writer's work in a child process. The same
bills give the same answers and the same ledger as the writer thread; a
killed writer process costs its batch a retry, nothing else."""

from __future__ import annotations

import os
import time
import signal

import grpc
import pytest

from conftest import ServerThread
from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.errors import Refused
from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.server import wire
from medsettle.v1 import settlement_pb2 as pb

VISITS = [  # (institution, person, insurance place, insutype): local, in-province, cross-province
    ("H44010100001", "44010000000000000001", "440100", 310),
    ("H44010100001", "44030000000000000001", "440300", 310),
    ("H44030100001", "31010000000000000001", "310100", 310),
]


def _bills(bill, n: int) -> list:
    bills = []
    for i in range(n):
        code, psn_no, insuplc, insutype = VISITS[i % len(VISITS)]
        bills.append(bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype, msgid=f"WP{i:05d}"))
    return bills


def _write(request) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    """A Settle write as the writer takes it (server/wire.py)."""
    return wire.SETTLE, request.SerializeToString()


def _decoded(answers: list[bytes]) -> list:
    """Each answer's SettleResult, or its Refused."""
    decoded: list = []
    for answer in answers:
        try:
            decoded.append(pb.SettleResult.FromString(wire.result_of(answer)))
        except Refused as refusal:
            decoded.append(refusal)
    return decoded


def _client(server: ServerThread) -> SettlementClient:
    return SettlementClient(server.target, token=server.operator_token, tokens=server.tokens, deadline_s=20.0, retries=0)


def _play(server: ServerThread, bills: list) -> list:
    """Unary settles, a retry, a conflicting retry, a reversal and a batch stream: what each answered."""
    answers: list = []
    with _client(server) as client:
        settled = [client.settle(b) for b in bills[:30]]
        answers += settled
        answers.append(client.settle(bills[0]))  # a retry: the first answer
        conflicting = type(bills[1])()
        conflicting.CopyFrom(bills[1])
        conflicting.fee_lines[0].cnt += 1
        with pytest.raises(CallRefused) as refused:
            client.settle(conflicting)
        answers.append((refused.value.code, refused.value.reason))
        answers.append(client.reverse("WP-REV-1", settled[1].fixmedins_code, settled[1].setl_id))
        answers.append(client.pre_settle(bills[30]))
        answers += [r.result for r in client.settle_batches([b for b in bills[31:] if b.fixmedins_code == "H44010100001"], 16)]
    return answers


def test_the_writer_process_answers_and_posts_as_the_writer_thread_does(tmp_path, clock, bill):
    bills = _bills(bill, 120)
    answers, books = [], []
    for mode in (False, True):
        server = ServerThread(tmp_path / f"ledger-{mode}.db", clock, writer_process=mode).start()
        try:
            assert (server.service.writer_process is not None) == mode
            answers.append(_play(server, bills))
            books.append(server.service.store.book_balances())
        finally:
            server.stop()
    assert answers[0] == answers[1]
    assert answers[1][31] == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_CONFLICT")
    assert books[0] == books[1]
    assert trial_balance_breaks(books[1]) == [] and reciprocity_breaks(books[1]) == []


def test_a_killed_writer_process_costs_its_batch_a_retry_and_is_replaced(tmp_path, clock, bill):
    server = ServerThread(tmp_path / "ledger.db", clock, writer_process=True).start()
    try:
        first, second, third = _bills(bill, 3)
        with _client(server) as client:
            before = client.settle(first)
            os.kill(server.service.writer_process.pid, signal.SIGKILL)
            with pytest.raises(CallRefused) as refused:
                client.settle(second)  # its batch was sent to a dead process
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert refused.value.reason == "STORAGE_UNAVAILABLE"
            assert server.service.writer_process.restarts == 1
            retried = client.settle(second)  # the same msgid, to the new writer process
            assert client.settle(third).setl_id > retried.setl_id > before.setl_id
            assert client.settle(second) == retried
        stored = server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]
        assert stored == 3
        books = server.service.store.book_balances()
        assert trial_balance_breaks(books) == [] and reciprocity_breaks(books) == []
    finally:
        server.stop()


def test_a_write_the_writer_process_cannot_handle_fails_alone(tmp_path, clock, bill):
    """A write the writer cannot handle (here: of no known kind) is refused
    with INTERNAL; the same child goes on."""
    from medsettle.ledger.errors import Reason, Refused
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore
    from medsettle.ledger.storage.writer_process import WriterProcess

    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    writer = WriterProcess(db, clock)
    try:
        [failed] = _decoded(writer.run_batch([(99, b"")]))
        assert isinstance(failed, Refused) and failed.reason == Reason.INTERNAL
        [settled] = _decoded(writer.run_batch([_write(bill())]))
        assert settled.setl_id == "S000000000001" and writer.restarts == 0
    finally:
        writer.close()
        store.close()


def test_batches_sent_to_a_dead_writer_process_are_lost_together_and_it_restarts_once(tmp_path, clock, bill):
    """Two batches outstanding when the child dies: each is told to retry with
    the same msgid, one new child replaces it, and both retries settle once."""
    from medsettle.ledger.errors import Reason, Refused
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore
    from medsettle.ledger.storage.writer_process import WriterProcess

    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    writer = WriterProcess(db, clock)
    commands = [_write(b) for b in _bills(bill, 2)]
    try:
        os.kill(writer.pid, signal.SIGKILL)
        first, second = writer.send_batch(commands[:1]), writer.send_batch(commands[1:])
        lost = _decoded(first() + second())
        assert all(isinstance(o, Refused) and o.reason == Reason.STORAGE_UNAVAILABLE for o in lost)
        assert writer.restarts == 1
        retried = _decoded(writer.send_batch(commands)())
        assert [s.msgid for s in retried] == ["WP00000", "WP00001"]
        assert store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 2
    finally:
        writer.close()
        store.close()


def test_health_is_not_serving_while_the_writer_process_cannot_be_restarted(tmp_path, clock, bill):
    """A writer process that dies and cannot be started again (here: its
    ledger's folder is gone) turns health NOT_SERVING and writes UNAVAILABLE
    saying so; once a child starts again, health is SERVING and writes settle."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = ServerThread(tmp_path / "ledger.db", clock, writer_process=True).start()
    writer = server.service.writer_process
    ledger_path = writer._db_path
    first = _bills(bill, 1)[0]
    channel = grpc.insecure_channel(server.target)
    health = health_pb2_grpc.HealthStub(channel)

    def status() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service="medsettle.v1.SettlementService"), timeout=10).status

    def eventually(expected: int) -> bool:
        deadline = time.monotonic() + 30
        while status() != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return status() == expected

    try:
        assert status() == health_pb2.HealthCheckResponse.SERVING
        writer._db_path = str(tmp_path / "gone" / "ledger.db")  # a new child cannot open its ledger
        os.kill(writer.pid, signal.SIGKILL)
        with _client(server) as client:
            with pytest.raises(CallRefused) as refused:
                client.settle(first)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert "could not be restarted" in refused.value.message
            assert server.service.writer_down() is not None
            assert eventually(health_pb2.HealthCheckResponse.NOT_SERVING)
            writer._db_path = ledger_path  # the watcher's next try starts a child
            assert eventually(health_pb2.HealthCheckResponse.SERVING)
            assert server.service.writer_down() is None
            assert client.settle(first).msgid == first.msgid
    finally:
        channel.close()
        server.stop()


def _down_writer_process(tmp_path, clock, bill):
    """A WriterProcess whose child died and could not be restarted (its
    ledger's folder was gone); the folder is back, so the next try works."""
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore
    from medsettle.ledger.storage.writer_process import WriterProcess

    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    writer = WriterProcess(db, clock)
    commands = [_write(b) for b in _bills(bill, 2)]
    writer._db_path = str(tmp_path / "gone" / "ledger.db")
    os.kill(writer.pid, signal.SIGKILL)
    _decoded(writer.run_batch(commands[:1]))
    assert writer.down is not None
    assert (writer.restarts, writer.restart_failures) == (0, 1)  # a failed try is not a restart
    writer._db_path = str(db)
    return writer, store, commands


def _hold_starts(writer):
    """Each child start waits until `go` is set; `starting` says one began."""
    import threading

    starting, go = threading.Event(), threading.Event()
    real_start = writer._start

    def held_start() -> None:
        starting.set()
        assert go.wait(30)
        real_start()

    writer._start = held_start
    return starting, go


def test_the_health_watcher_does_not_replace_a_child_that_a_batch_is_starting(tmp_path, clock, bill):
    """While a lost batch restarts the child (down still says the last try
    failed), the watcher's retry waits for it and then leaves the new child
    alone: it is not killed and replaced a second time."""
    import threading
    import time

    writer, store, commands = _down_writer_process(tmp_path, clock, bill)
    try:
        restarts = writer.restarts
        starting, go = _hold_starts(writer)
        lost = writer.send_batch(commands[:1])  # the dead child's pipe: its call restarts
        by_batch = threading.Thread(target=lost)
        by_batch.start()
        assert starting.wait(30)
        by_watcher = threading.Thread(target=writer.retry_start)
        by_watcher.start()
        time.sleep(0.3)  # the watcher's retry is now waiting for the restart
        go.set()
        by_batch.join(60)
        by_watcher.join(60)
        assert writer.down is None
        assert writer.restarts == restarts + 1
        assert [s.msgid for s in _decoded(writer.run_batch(commands))] == ["WP00000", "WP00001"]
    finally:
        writer.close()
        store.close()


def test_a_writer_process_that_could_not_be_spawned_is_started_by_the_next_try(tmp_path, clock, bill):
    """Process.start() itself failing (no fork: EAGAIN, EMFILE) is a failed
    restart like any other: down says so, and the next try starts a child."""
    import errno

    from medsettle.ledger.errors import Reason, Refused

    writer, store, commands = _down_writer_process(tmp_path, clock, bill)
    context = writer._context

    class SpawnFailsOnce:
        failed = False

        def Pipe(self, duplex: bool):  # noqa: N802
            return context.Pipe(duplex=duplex)

        def Process(self, **kwargs):  # noqa: N802
            process = context.Process(**kwargs)
            if not SpawnFailsOnce.failed:
                SpawnFailsOnce.failed = True

                def start() -> None:
                    raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

                process.start = start
            return process

    writer._context = SpawnFailsOnce()
    try:
        [lost] = _decoded(writer.run_batch(commands[:1]))
        assert isinstance(lost, Refused) and lost.reason == Reason.STORAGE_UNAVAILABLE
        assert "Resource temporarily unavailable" in (writer.down or "")
        writer.retry_start()
        assert writer.down is None
        assert (writer.restarts, writer.restart_failures) == (1, 2)
        assert [s.msgid for s in _decoded(writer.run_batch(commands))] == ["WP00000", "WP00001"]
    finally:
        writer.close()
        store.close()


def test_a_batch_being_sent_while_the_child_is_replaced_is_told_to_retry(tmp_path, clock, bill, monkeypatch):
    """The writer thread is sending a batch (encoding it) to a child that
    died when the answer thread replaces that child: the batch is lost with
    STORAGE_UNAVAILABLE (retry with the same msgid), not an internal error,
    and it never reaches the new child."""
    import threading

    from medsettle.ledger.errors import Reason, Refused
    from medsettle.ledger.service import open_reference
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore
    from medsettle.ledger.storage.writer_process import WriterProcess

    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    writer = WriterProcess(db, clock)
    commands = [_write(b) for b in _bills(bill, 2)]
    pickling, resume = threading.Event(), threading.Event()  # "pickling": encoding the batch's frame
    real = wire.batch_body

    def held_batch_body(writes):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "sender":
            pickling.set()
            assert resume.wait(30)
        return real(writes)

    monkeypatch.setattr(wire, "batch_body", held_batch_body)
    sent: list = []
    try:
        generation = writer._generation
        os.kill(writer.pid, signal.SIGKILL)
        writer._child.join(30)
        sender = threading.Thread(target=lambda: sent.append(writer.send_batch(commands[1:])), name="sender")
        sender.start()
        assert pickling.wait(30)
        writer._restarted(generation, 0)  # as the answer thread does on the first batch's EOF
        resume.set()
        sender.join(30)
        assert len(sent) == 1, "send_batch raised"
        [lost] = _decoded(sent[0]())
        assert isinstance(lost, Refused) and lost.reason == Reason.STORAGE_UNAVAILABLE
        assert [s.msgid for s in _decoded(writer.run_batch(commands))] == ["WP00000", "WP00001"]
    finally:
        resume.set()
        writer.close()
        store.close()


def test_close_waits_for_a_restart_in_progress_and_leaves_no_child(tmp_path, clock, bill):
    """Server shutdown while the health watcher's retry is starting a child:
    close() stops that child too; none is started after close()."""
    import threading
    import time

    writer, store, _ = _down_writer_process(tmp_path, clock, bill)
    starting, go = _hold_starts(writer)
    by_watcher = threading.Thread(target=writer.retry_start)
    by_watcher.start()
    try:
        assert starting.wait(30)
        closing = threading.Thread(target=writer.close)
        closing.start()
        time.sleep(0.3)
        go.set()
        closing.join(90)
        by_watcher.join(90)
        assert not closing.is_alive() and not by_watcher.is_alive()
        assert not writer._child.is_alive()
        writer.retry_start()  # after close: nothing starts
        assert not writer._child.is_alive()
    finally:
        go.set()
        if writer._child.is_alive():
            writer._child.kill()
        store.close()


def test_health_is_not_serving_while_a_dead_writer_process_is_being_replaced(tmp_path, clock, bill):
    """Writes wait while a new child starts: health says so (NOT_SERVING, and
    medsettle_writer_up 0), then SERVING again once it runs."""
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from medsettle.client.metrics_scrape import scrape, value

    server = ServerThread(tmp_path / "ledger.db", clock, writer_process=True, metrics_address="127.0.0.1:0").start()
    writer = server.service.writer_process
    first, second = _bills(bill, 2)
    channel = grpc.insecure_channel(server.target)
    health = health_pb2_grpc.HealthStub(channel)
    metrics_url = f"http://127.0.0.1:{server.metrics_port}/metrics"

    def eventually(status: int) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == status:
                return True
            time.sleep(0.1)
        return False

    try:
        starting, go = _hold_starts(writer)
        os.kill(writer.pid, signal.SIGKILL)
        with _client(server) as client:
            lost: list = []
            caller = threading.Thread(target=lambda: lost.append(pytest.raises(CallRefused, client.settle, first)))
            caller.start()  # its batch reaches the dead child; the answer thread starts a new one, held
            assert starting.wait(30)
            assert writer.starting and server.service.writer_down() is None
            assert eventually(health_pb2.HealthCheckResponse.NOT_SERVING)
            assert value(scrape(metrics_url), "medsettle_writer_up") == 0
            go.set()
            caller.join(30)
            assert lost[0].value.reason == "STORAGE_UNAVAILABLE"
            assert eventually(health_pb2.HealthCheckResponse.SERVING)
            assert not writer.starting and value(scrape(metrics_url), "medsettle_writer_up") == 1
            assert client.settle(first).msgid == first.msgid and client.settle(second).msgid == second.msgid
    finally:
        channel.close()
        server.stop()


def _sleeps_holding_its_pipes(*args) -> None:  # type: ignore[no-untyped-def]
    """A writer child that never says it is ready (its pipes stay open)."""
    time.sleep(3600)


def test_closing_gives_up_a_start_that_would_wait_its_whole_timeout(tmp_path, clock, bill, monkeypatch):
    """A new child that never says it is ready (here: one that only sleeps)
    holds a restart up to START_TIMEOUT_S; close() must not wait that out:
    the start gives up, its child is killed, the batch is told to retry."""
    import threading

    from medsettle.ledger.errors import Reason, Refused
    from medsettle.ledger.storage import writer_process as module

    monkeypatch.setattr(module, "START_TIMEOUT_S", 3600.0)
    writer, store, commands = _down_writer_process(tmp_path, clock, bill)
    children = _writer_that_starts_sleepers(writer)
    outcomes: list = []
    retrying = threading.Thread(target=lambda: outcomes.extend(_decoded(writer.run_batch(commands[:1]))))
    try:
        retrying.start()  # the writer is down: this batch's call starts a child, which never gets ready
        deadline = time.monotonic() + 30
        while not writer.starting:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        closing = threading.Thread(target=writer.close)
        closing.start()
        closing.join(30)
        retrying.join(30)
        assert not closing.is_alive() and not retrying.is_alive()
        [lost] = outcomes
        assert isinstance(lost, Refused) and lost.reason == Reason.STORAGE_UNAVAILABLE
        assert "the server is closing; retry with the same msgid" in str(lost)
        assert writer.restart_failures == 1  # the one before; giving up at close is not a failure
        assert [child.is_alive() for child in children] == [False]
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
        store.close()


def _writer_that_starts_sleepers(writer):  # type: ignore[no-untyped-def]
    """Every child `writer` starts from now on never gets ready; returns them."""
    context, children = writer._context, []

    class SpawnsASleeper:
        def Pipe(self, duplex: bool):  # noqa: N802
            return context.Pipe(duplex=duplex)

        def Process(self, **kwargs):  # noqa: N802
            children.append(context.Process(target=_sleeps_holding_its_pipes, args=kwargs["args"], daemon=True))
            return children[-1]

    writer._context = SpawnsASleeper()
    return children


def test_the_service_drain_gives_a_start_a_grace_then_gives_it_up(tmp_path, clock, bill, monkeypatch):
    """SettlementService.close() during a restart that would never end: the
    queued write waits out the grace (CLOSE_START_GRACE_S, not the 60 s start
    timeout), then is told to retry; close() returns."""
    import asyncio
    import threading

    from medsettle.ledger.errors import Refused
    from medsettle.ledger.service import SettlementService
    from medsettle.ledger.storage import writer_process as module

    monkeypatch.setattr(module, "START_TIMEOUT_S", 3600.0)
    monkeypatch.setattr(module, "CLOSE_START_GRACE_S", 0.5)
    service = SettlementService(tmp_path / "ledger.db", clock, writer_process=True)
    writer = service.writer_process
    children = _writer_that_starts_sleepers(writer)
    outcome: list = []

    async def settle_then_close() -> None:
        service.start()
        os.kill(writer.pid, signal.SIGKILL)
        pending = service.submit_write(wire.SETTLE, _bills(bill, 1)[0].SerializeToString())  # its batch finds the child dead
        deadline = time.monotonic() + 30
        while not writer.starting:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        closing = threading.Thread(target=service.close)
        closing.start()
        try:
            wire.result_of(await pending)
        except Refused as refused:
            outcome.append(refused)
        await asyncio.to_thread(closing.join, 30)
        outcome.append(closing.is_alive())

    try:
        asyncio.run(settle_then_close())
        refused, still_closing = outcome
        assert "the server is closing" in str(refused) and not still_closing
        assert writer.restart_failures == 0 and [child.is_alive() for child in children] == [False]
    finally:
        for child in children:
            if child.is_alive():
                child.kill()


def test_no_child_is_started_once_the_close_deadline_passed(tmp_path, clock, bill):
    """A child that dies during the drain after the grace is not replaced:
    its batch is told to retry, no start is tried, nothing counts as failed."""
    from medsettle.ledger.errors import Refused

    writer, store, commands = _down_writer_process(tmp_path, clock, bill)
    try:
        writer.retry_start()
        assert writer.down is None and writer.restarts == 1
        children = _writer_that_starts_sleepers(writer)
        writer.begin_closing(0.0)
        os.kill(writer.pid, signal.SIGKILL)
        for _ in range(3):
            [lost] = _decoded(writer.run_batch(commands[:1]))
            assert isinstance(lost, Refused) and "the server is closing" in str(lost)
        assert children == [] and writer.restart_failures == 1 and writer.down is None
    finally:
        writer.close()
        store.close()

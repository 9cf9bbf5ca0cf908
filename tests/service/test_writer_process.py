"""`serve --writer-process`: the writer's work in a child process. The same
bills give the same answers and the same ledger as the writer thread; a
killed writer process costs its batch a retry, nothing else."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import grpc
import pytest

from conftest import ServerThread
from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.ledger.service import open_reference
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.writer import GroupCommitWriter, WriterLimits
from medsettle.ledger.storage.writer_process import ProcessChannel, WriterProcess
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


def _ledger(tmp_path, clock):  # type: ignore[no-untyped-def]
    """A ledger with its reference data, and a WriterProcess on it."""
    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    return store, WriterProcess(db, clock)


def _through_the_loop(process: WriterProcess, scenario):  # type: ignore[no-untyped-def]
    """Runs scenario(writer) on an event loop, the writer's batches going to
    `process` as in the server (GroupCommitWriter over a ProcessChannel)."""
    async def run():  # type: ignore[no-untyped-def]
        # overlap_min 1: a second batch goes at once, so tests can hold two in the writer
        writer = GroupCommitWriter(ProcessChannel(process), WriterLimits(overlap_min=1))
        writer.start()
        try:
            return await scenario(writer)
        finally:
            await writer.drain()
            writer.close()
    return asyncio.run(run())


async def _sent(writer: GroupCommitWriter, writes: list) -> list:  # type: ignore[type-arg]
    """Queues writes; one loop iteration later they are one batch, sent."""
    futures = [writer.submit(w) for w in writes]
    await asyncio.sleep(0)
    return futures


async def _answers(futures: list) -> list:  # type: ignore[type-arg]
    return _decoded([await f for f in futures])


def _count(store) -> int:  # type: ignore[no-untyped-def]
    return store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0]


def _played(store, process: WriterProcess, scenario):  # type: ignore[no-untyped-def]
    """Runs scenario through the loop, then closes the writer process and
    the store: (settlements stored, the book balances)."""
    try:
        _through_the_loop(process, scenario)
        return _count(store), store.book_balances()
    finally:
        process.close()
        store.close()


def test_a_killed_writer_process_costs_its_batch_a_retry_and_is_replaced(tmp_path, clock, bill):
    """Killed with a batch in flight (sent, not answered: the child is
    stopped first), its callers are told to retry with the same msgid; a new
    child is started and the retry settles once."""
    store, process = _ledger(tmp_path, clock)
    writes = [_write(b) for b in _bills(bill, 3)]

    async def scenario(writer: GroupCommitWriter) -> None:
        [before] = await _answers(await _sent(writer, writes[:1]))
        os.kill(process.pid, signal.SIGSTOP)
        in_flight = await _sent(writer, writes[1:2])
        await asyncio.sleep(0.2)
        assert not in_flight[0].done() and writer.queue_length() == 0
        os.kill(process.pid, signal.SIGKILL)
        [lost] = await _answers(in_flight)
        assert isinstance(lost, Refused) and lost.reason == Reason.STORAGE_UNAVAILABLE
        assert "retry with the same msgid" in lost.message
        retried, third = await _answers(await _sent(writer, writes[1:3]))  # wait for the new child, then go
        assert process.restarts == 1
        assert third.setl_id > retried.setl_id > before.setl_id
        [again] = await _answers(await _sent(writer, writes[1:2]))
        assert again == retried

    stored, books = _played(store, process, scenario)
    assert stored == 3
    assert trial_balance_breaks(books) == [] and reciprocity_breaks(books) == []


def test_a_writer_process_killed_while_idle_costs_nothing(tmp_path, clock, bill):
    """A child that dies with no batch in flight is replaced at once; the
    next write waits for the new child and settles."""
    store, process = _ledger(tmp_path, clock)
    first, second = (_write(b) for b in _bills(bill, 2))

    async def scenario(writer: GroupCommitWriter) -> None:
        await _answers(await _sent(writer, [first]))
        pid = process.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while process.pid == pid or process.starting:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        [settled] = await _answers(await _sent(writer, [second]))
        assert settled.msgid == "WP00001" and process.restarts == 1

    _played(store, process, scenario)


def test_a_write_the_writer_process_cannot_handle_fails_alone(tmp_path, clock, bill):
    """A write the writer cannot handle (here: of no known kind) is refused
    with INTERNAL; the same child goes on."""
    store, process = _ledger(tmp_path, clock)

    async def scenario(writer: GroupCommitWriter) -> None:
        failed, settled = await _answers(await _sent(writer, [(99, b""), _write(bill())]))
        assert isinstance(failed, Refused) and failed.reason == Reason.INTERNAL
        assert settled.setl_id == "S000000000001" and process.restarts == 0

    _played(store, process, scenario)


def test_batches_sent_to_a_dead_writer_process_are_lost_together_and_it_restarts_once(tmp_path, clock, bill):
    """Two batches in flight when the child dies: each is told to retry with
    the same msgid, one new child replaces it, and both retries settle once."""
    store, process = _ledger(tmp_path, clock)
    writes = [_write(b) for b in _bills(bill, 2)]

    async def scenario(writer: GroupCommitWriter) -> None:
        os.kill(process.pid, signal.SIGSTOP)
        first, second = await _sent(writer, writes[:1]), await _sent(writer, writes[1:])
        assert writer.queue_length() == 0  # both sent: two batches in flight
        os.kill(process.pid, signal.SIGKILL)
        lost = await _answers(first + second)
        assert all(isinstance(o, Refused) and o.reason == Reason.STORAGE_UNAVAILABLE for o in lost)
        retried = await _answers(await _sent(writer, writes))
        assert [s.msgid for s in retried] == ["WP00000", "WP00001"] and process.restarts == 1

    assert _played(store, process, scenario)[0] == 2


def test_a_caller_that_gave_up_before_its_batch_was_sent_is_not_settled(tmp_path, clock, bill):
    """A write whose caller gave up (its future cancelled: a deadline, a
    cancel) while it waited for the pipeline is not sent to the writer."""
    store, process = _ledger(tmp_path, clock)
    writes = [_write(b) for b in _bills(bill, 4)]

    async def scenario(writer: GroupCommitWriter) -> None:
        os.kill(process.pid, signal.SIGSTOP)  # two batches fill the pipeline; the third waits
        held = await _sent(writer, writes[:1]) + await _sent(writer, writes[1:2])
        [given_up], [kept] = await _sent(writer, writes[2:3]), await _sent(writer, writes[3:4])
        assert writer.queue_length() == 2
        given_up.cancel()
        os.kill(process.pid, signal.SIGCONT)
        settled = await _answers(held + [kept])
        assert [s.msgid for s in settled] == ["WP00000", "WP00001", "WP00003"]
        assert writer.commands_done == 3

    assert _played(store, process, scenario)[0] == 3  # WP00002 is not among them: settled are WP00000, 1 and 3


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
                client.settle(first)  # waits for the restart, which fails (or, sent before, was lost)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            # health is NOT_SERVING from the start of the restart; down is said once it failed
            deadline = time.monotonic() + 30
            while server.service.writer_down() is None:
                assert time.monotonic() < deadline, "the failed restart was never reported"
                time.sleep(0.05)
            assert eventually(health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(CallRefused) as refused:
                client.settle(first)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert "could not be restarted" in refused.value.message
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
    store, writer = _ledger(tmp_path, clock)
    writes = [_write(b) for b in _bills(bill, 2)]
    db = writer._db_path
    writer._db_path = str(tmp_path / "gone" / "ledger.db")
    os.kill(writer.pid, signal.SIGKILL)
    writer.restart(writer.generation)  # as the channel does, off the loop, on the child's death
    assert writer.down is not None and "could not be restarted" in writer.down
    assert (writer.restarts, writer.restart_failures) == (0, 1)  # a failed try is not a restart
    writer._db_path = db
    return writer, store, writes


def _hold_starts(writer):
    """Each child start waits until `go` is set; `starting` says one began."""
    starting, go = threading.Event(), threading.Event()
    real_start = writer._start

    def held_start() -> None:
        starting.set()
        assert go.wait(30)
        real_start()

    writer._start = held_start
    return starting, go


def _settles(writer: WriterProcess, writes: list) -> list:  # type: ignore[type-arg]
    return _through_the_loop(writer, lambda group: _sent_and_answered(group, writes))


async def _sent_and_answered(writer: GroupCommitWriter, writes: list) -> list:  # type: ignore[type-arg]
    return await _answers(await _sent(writer, writes))


def test_the_health_watcher_does_not_replace_a_child_that_a_death_is_starting(tmp_path, clock, bill):
    """While a death's restart starts the child (down still says the last
    try failed), the watcher's retry waits for it and then leaves the new
    child alone: it is not killed and replaced a second time."""
    writer, store, writes = _down_writer_process(tmp_path, clock, bill)
    try:
        restarts = writer.restarts
        starting, go = _hold_starts(writer)
        by_death = threading.Thread(target=writer.restart, args=(writer.generation,))
        by_death.start()
        assert starting.wait(30)
        by_watcher = threading.Thread(target=writer.retry_start)
        by_watcher.start()
        time.sleep(0.3)  # the watcher's retry is now waiting for the restart
        go.set()
        by_death.join(60)
        by_watcher.join(60)
        assert writer.down is None
        assert writer.restarts == restarts + 1
        assert [s.msgid for s in _settles(writer, writes)] == ["WP00000", "WP00001"]
    finally:
        writer.close()
        store.close()


def test_a_writer_process_that_could_not_be_spawned_is_started_by_the_next_try(tmp_path, clock, bill):
    """Process.start() itself failing (no fork: EAGAIN, EMFILE) is a failed
    restart like any other: down says so, and the next try starts a child."""
    import errno

    writer, store, writes = _down_writer_process(tmp_path, clock, bill)
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
        writer.retry_start()
        assert "Resource temporarily unavailable" in (writer.down or "")
        writer.retry_start()
        assert writer.down is None
        assert (writer.restarts, writer.restart_failures) == (1, 2)
        assert [s.msgid for s in _settles(writer, writes)] == ["WP00000", "WP00001"]
    finally:
        writer.close()
        store.close()


def test_close_waits_for_a_restart_in_progress_and_leaves_no_child(tmp_path, clock, bill):
    """Server shutdown while the health watcher's retry is starting a child:
    close() stops that child too; none is started after close()."""
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
    medsettle_writer_up 0), then SERVING again once it runs, and the writes
    that waited settle."""
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
        assert starting.wait(30)  # the loop saw the death; the new child's start is held
        with _client(server) as client:
            answers: list = []
            caller = threading.Thread(target=lambda: answers.append(client.settle(first)))
            caller.start()  # its write waits for the new child
            assert writer.starting and server.service.writer_down() is None
            assert eventually(health_pb2.HealthCheckResponse.NOT_SERVING)
            assert value(scrape(metrics_url), "medsettle_writer_up") == 0
            assert answers == []
            go.set()
            caller.join(30)
            assert [a.msgid for a in answers] == [first.msgid]
            assert eventually(health_pb2.HealthCheckResponse.SERVING)
            assert not writer.starting and value(scrape(metrics_url), "medsettle_writer_up") == 1
            assert client.settle(second).msgid == second.msgid
    finally:
        go.set()
        channel.close()
        server.stop()


def _sleeps_holding_its_pipes(*args) -> None:  # type: ignore[no-untyped-def]
    """A writer child that never says it is ready (its pipes stay open)."""
    time.sleep(3600)


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


def test_closing_gives_up_a_start_that_would_wait_its_whole_timeout(tmp_path, clock, bill, monkeypatch):
    """A new child that never says it is ready (here: one that only sleeps)
    holds a restart up to START_TIMEOUT_S; close() must not wait that out:
    the start gives up and its child is killed; it is not a failure."""
    from medsettle.ledger.storage import writer_process as module

    monkeypatch.setattr(module, "START_TIMEOUT_S", 3600.0)
    writer, store, _ = _down_writer_process(tmp_path, clock, bill)
    children = _writer_that_starts_sleepers(writer)
    retrying = threading.Thread(target=writer.retry_start)
    try:
        retrying.start()  # the child it starts never gets ready
        deadline = time.monotonic() + 30
        # the sleeper is started (not only `starting` set: a close before the
        # start would rightly start none, and the test would see no child)
        while not (children and children[0].is_alive()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        closing = threading.Thread(target=writer.close)
        closing.start()
        closing.join(30)
        retrying.join(30)
        assert not closing.is_alive() and not retrying.is_alive()
        assert "the server is closing; retry with the same msgid" in (writer.down or "")
        assert writer.restart_failures == 1  # the one before; giving up at close is not a failure
        assert [child.is_alive() for child in children] == [False]
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
        store.close()


def test_the_service_drain_gives_a_start_a_grace_then_gives_it_up(tmp_path, clock, bill, monkeypatch):
    """SettlementService.drain() during a restart that would never end: the
    queued write waits out the grace (CLOSE_START_GRACE_S, not the 60 s start
    timeout), then is told to retry; the drain and close() return."""
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
        deadline = time.monotonic() + 30
        while not writer.starting:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        pending = service.submit_write(wire.SETTLE, _bills(bill, 1)[0].SerializeToString())  # waits for the start
        await asyncio.wait_for(service.drain(), 30)
        try:
            wire.result_of(await pending)
        except Refused as refused:
            outcome.append(refused)
        await asyncio.wait_for(asyncio.to_thread(service.close), 30)

    try:
        asyncio.run(settle_then_close())
        [refused] = outcome
        assert "the server is closing" in str(refused)
        assert writer.restart_failures == 0 and [child.is_alive() for child in children] == [False]
    finally:
        for child in children:
            if child.is_alive():
                child.kill()


def test_no_child_is_started_once_the_close_deadline_passed(tmp_path, clock, bill):
    """A child that dies during the drain after the grace is not replaced:
    its batch is told to retry, no start is tried, nothing counts as failed."""
    writer, store, writes = _down_writer_process(tmp_path, clock, bill)
    try:
        writer.retry_start()
        assert writer.down is None and writer.restarts == 1
        children = _writer_that_starts_sleepers(writer)
        writer.begin_closing(0.0)

        async def scenario(group: GroupCommitWriter) -> None:
            os.kill(writer.pid, signal.SIGSTOP)
            in_flight = await _sent(group, writes[:1])
            os.kill(writer.pid, signal.SIGKILL)
            [lost] = await _answers(in_flight)
            assert isinstance(lost, Refused) and lost.reason == Reason.STORAGE_UNAVAILABLE
            deadline = time.monotonic() + 30
            while writer.down is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            with pytest.raises(Refused) as refused:
                group.submit(writes[1])
            assert "the server is closing" in str(refused.value)

        _through_the_loop(writer, scenario)
        assert children == [] and writer.restart_failures == 1
    finally:
        writer.close()
        store.close()

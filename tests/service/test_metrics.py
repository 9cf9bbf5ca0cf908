"""Prometheus metrics (`serve --metrics-listen`): a real server on port 0,
real gRPC calls, then /metrics scraped over HTTP and parsed as Prometheus
parses it. Each count is checked against the calls the test made."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import grpc
import pytest

from medsettle.client.metrics_scrape import Samples, by_label, value
from medsettle.client.metrics_scrape import scrape as read_metrics
from medsettle.client.settlement_client import CallRefused, SettlementClient
from tests.conftest import ServerThread


def scrape(port: int) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
    return read_metrics(f"http://127.0.0.1:{port}/metrics")


def scrape_when_done(port: int, method: str) -> Samples:
    """A scrape once the server has counted the calls of method it answered:
    a call is counted just after its answer is sent, so a client can scrape first."""
    deadline = time.monotonic() + 10
    samples = scrape(port)
    while value(samples, "medsettle_calls_in_flight", method=method) != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
        samples = scrape(port)
    return samples



@pytest.fixture
def metered(db_path, clock):
    running = ServerThread(db_path, clock, metrics_address="127.0.0.1:0").start()
    yield running
    running.stop()


def test_calls_outcomes_and_writer_batches_are_counted_as_made(metered, bill):
    first, conflicting, invalid = bill(), bill(), bill(lines=[("XB0201", 0, 3500)])
    conflicting.msgid = first.msgid
    conflicting.fee_lines[0].pric_fen += 1  # the same msgid with another bill
    with SettlementClient(metered.target, tokens=metered.tokens, deadline_s=10.0, retries=0) as client:
        client.settle(first)
        assert client.settle(first).setl_id  # the retry: answered again, OK
        for refused in (conflicting, invalid):
            with pytest.raises(CallRefused):
                client.settle(refused)
        stream = list(client.settle_stream([bill(), bill(lines=[("XB0201", 0, 3500)]), bill()]))
        assert [item.status.reason for item in stream] == ["", "FIELD_INVALID", ""]
    other = bill(code="H44030100001", psn_no="44030000000000000001", insuplc="440300")
    with SettlementClient(metered.target, token=metered.tokens["H44010100001"], deadline_s=10.0, retries=0) as hospital:
        with pytest.raises(CallRefused) as denied:
            hospital.settle(other)  # another institution's bill
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        items = list(hospital.settle_stream([bill(), other]))
        assert [item.status.reason for item in items] == ["", "NOT_YOUR_INSTITUTION"]
    with SettlementClient(metered.target, deadline_s=10.0, retries=0) as anonymous:
        with pytest.raises(CallRefused) as unauthenticated:
            anonymous.settle(bill())
        assert unauthenticated.value.code == grpc.StatusCode.UNAUTHENTICATED

    samples = scrape(metered.metrics_port)
    assert by_label(samples, "medsettle_calls_total", "code", method="Settle") == {
        "OK": 2, "ALREADY_EXISTS": 1, "INVALID_ARGUMENT": 1, "UNAUTHENTICATED": 1, "PERMISSION_DENIED": 1}
    assert by_label(samples, "medsettle_calls_total", "code", method="SettleStream") == {"OK": 2}
    # Handling time is measured for the calls whose handler ran (not the unauthenticated one).
    assert value(samples, "medsettle_call_seconds_count", method="Settle") == 5
    assert value(samples, "medsettle_call_seconds_bucket", method="Settle", le="+Inf") == 5
    assert value(samples, "medsettle_call_seconds_sum", method="Settle") > 0
    assert by_label(samples, "medsettle_outcomes_total", "result", method="Settle") == {
        "OK": 2, "IDEMPOTENCY_CONFLICT": 1, "FIELD_INVALID": 1, "NOT_YOUR_INSTITUTION": 1}
    assert by_label(samples, "medsettle_outcomes_total", "result", method="SettleStream") == {
        "OK": 3, "FIELD_INVALID": 1, "NOT_YOUR_INSTITUTION": 1}
    # The writer saw every write that passed authorization (it validates them): 4 Settle calls, 4 stream items.
    assert value(samples, "medsettle_writer_commands_total") == 8
    batches = value(samples, "medsettle_writer_batches_total")
    assert 1 <= batches <= 8
    assert value(samples, "medsettle_writer_batch_commands_count") == batches
    assert value(samples, "medsettle_writer_batch_commands_sum") == 8
    assert value(samples, "medsettle_writer_batch_seconds_count") == batches
    assert value(samples, "medsettle_writer_queue_commands") == 0
    assert value(samples, "medsettle_writer_up") == 1
    assert value(samples, "medsettle_build_info", version="0.1.0") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_the_writer_process_is_watched_through_its_death_and_restart(db_path, clock, bill):
    running = ServerThread(db_path, clock, writer_process=True, metrics_address="127.0.0.1:0").start()
    try:
        writer = running.service.writer_process
        first_pid = writer.pid
        before = scrape(running.metrics_port)
        assert value(before, "medsettle_writer_process_resident_memory_bytes") > 0
        assert value(before, "medsettle_writer_restarts_total") == 0
        ledger_path = writer._db_path
        writer._db_path = str(db_path.parent / "gone" / "ledger.db")  # the next child cannot open its ledger
        os.kill(first_pid, signal.SIGKILL)
        with SettlementClient(running.target, tokens=running.tokens, deadline_s=10.0, retries=0) as client:
            with pytest.raises(CallRefused) as lost:
                client.settle(bill())
            assert lost.value.reason == "STORAGE_UNAVAILABLE"
            deadline = time.monotonic() + 30  # the write may have been lost before the restart failed
            while running.service.writer_down() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            down = scrape_when_done(running.metrics_port, "Settle")
            assert value(down, "medsettle_writer_up") == 0
            assert value(down, "medsettle_writer_restart_failures_total") >= 1
            assert value(down, "medsettle_writer_restarts_total") == 0
            assert value(down, "medsettle_outcomes_total", method="Settle", result="STORAGE_UNAVAILABLE") == 1
            assert value(down, "medsettle_calls_total", method="Settle", code="UNAVAILABLE") == 1
            writer._db_path = ledger_path  # the health watcher's next try starts a child
            deadline = time.monotonic() + 30
            while running.service.writer_down() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            client.settle(bill())
        after = scrape(running.metrics_port)
        assert value(after, "medsettle_writer_up") == 1
        assert value(after, "medsettle_writer_restarts_total") == 1
        assert writer.pid != first_pid
        assert value(after, "medsettle_writer_process_start_time_seconds") >= value(
            before, "medsettle_writer_process_start_time_seconds")
    finally:
        running.stop()


def test_a_server_without_metrics_listens_for_none(server):
    assert server.metrics_port is None


def test_a_call_past_its_deadline_is_counted_as_such(metered, db_path, bill):
    """The writer waits for a lock another connection holds; the caller's
    deadline passes: DEADLINE_EXCEEDED, not CANCELLED, and no outcome."""
    import sqlite3

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        with SettlementClient(metered.target, tokens=metered.tokens, deadline_s=0.3, retries=0) as client:
            with pytest.raises(CallRefused) as late:
                client.settle(bill())
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    deadline = time.monotonic() + 10
    while not (counted := by_label(scrape(metered.metrics_port), "medsettle_calls_total", "code", method="Settle")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert counted == {"DEADLINE_EXCEEDED": 1}
    assert by_label(scrape(metered.metrics_port), "medsettle_outcomes_total", "result", method="Settle") == {}


def test_calls_in_flight_are_those_whose_handler_runs_now(metered, db_path, bill):
    """A Settle held by a write lock another connection holds is in flight
    until the lock goes; then none is."""
    import sqlite3
    import threading

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    answers = []
    with SettlementClient(metered.target, tokens=metered.tokens, deadline_s=30.0, retries=0) as client:
        caller = threading.Thread(target=lambda: answers.append(client.settle(bill())))
        caller.start()
        try:
            deadline = time.monotonic() + 10
            while value(scrape(metered.metrics_port), "medsettle_calls_in_flight", method="Settle") != 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        caller.join(30)
    assert len(answers) == 1
    assert value(scrape(metered.metrics_port), "medsettle_calls_in_flight", method="Settle") == 0

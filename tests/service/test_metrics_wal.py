"""The SQLite WAL checkpointer seen from outside a real server: its
figures on /metrics (scraped over HTTP; in writer-process mode they come
from the writer process), a reader that holds the WAL back, a fault in the
checkpointer's connection logged once when it begins and once when it
ends, and the server degraded (never NOT_SERVING) while a reader holds the
WAL far beyond its bound."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medsettle.client.metrics_scrape import Samples, scrape, value
from medsettle.client.settlement_client import SettlementClient
from medsettle.ledger.storage import sqlite as sqlite_store
from medsettle.server import health
from medsettle.ledger.storage import writer_process as writer_process_module
from tests.conftest import ServerThread
from writer_faults import checkpoint_trigger, install_checkpoint_fault, serve_with_failing_checkpoints


def metrics(server: ServerThread) -> Samples:
    return scrape(f"http://127.0.0.1:{server.metrics_port}/metrics")


def wait_for_metrics(server: ServerThread, condition: Any, what: str, timeout_s: float = 30.0) -> Samples:
    deadline = time.monotonic() + timeout_s
    while not condition(samples := metrics(server)):
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}: {wal_samples(samples)}"
        time.sleep(0.05)
    return samples


def wal_samples(samples: Samples) -> dict[str, float]:
    return {name: sample for (name, labels), sample in samples.items() if "_wal_" in name or "degraded" in name}


def health_status(server: ServerThread) -> int:
    with grpc.insecure_channel(server.target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def logged(capfd: pytest.CaptureFixture[str], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JSON log lines written since the last call, added to lines."""
    for line in capfd.readouterr().err.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def events(lines: list[dict[str, Any]], prefix: str = "WAL ") -> list[str]:
    return [line["event"] for line in lines if line["event"].startswith(prefix)]


def wait_for_line(capfd: pytest.CaptureFixture[str], lines: list[dict[str, Any]], event: str,
                  timeout_s: float = 30.0) -> None:
    """Until the server has logged event (the health watcher looks each second)."""
    deadline = time.monotonic() + timeout_s
    while event not in events(logged(capfd, lines)):
        assert time.monotonic() < deadline, f"no log line {event!r} in {timeout_s} s: {events(lines)}"
        time.sleep(0.1)


def open_reader(db_path: Path) -> sqlite3.Connection:
    """A read transaction on the ledger file: its snapshot keeps later frames from being copied."""
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM settlements").fetchone()
    return reader


@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
def test_the_checkpoints_and_a_reader_holding_the_wal_back_are_on_metrics(db_path, clock, bill,
                                                                          writer_process: bool) -> None:
    server = ServerThread(db_path, clock, writer_process=writer_process, metrics_address="127.0.0.1:0").start()
    reader: sqlite3.Connection | None = None
    try:
        before = metrics(server)
        assert value(before, "medsettle_wal_checkpoints_total") == 0  # no write yet: no checkpointer
        assert value(before, "medsettle_wal_checkpoint_lag_seconds") == 0
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=10.0, retries=0) as client:
            for _ in range(5):
                client.settle(bill())
            samples = wait_for_metrics(server, lambda s: value(s, "medsettle_wal_checkpoints_total") > 0,
                                       "a checkpoint counted")
            assert value(samples, "medsettle_wal_bound_frames") == sqlite_store.WAL_BOUND_FRAMES
            assert value(samples, "medsettle_wal_frames") > 0 and value(samples, "medsettle_wal_bytes") > 0
            assert value(samples, "medsettle_wal_checkpoint_failures_total") == 0
            assert value(samples, "medsettle_wal_checkpoint_failing") == 0
            assert value(samples, "medsettle_degraded", reason="wal_held_back") == 0
            reader = open_reader(db_path)
            for _ in range(5):
                client.settle(bill())
            held = wait_for_metrics(server, lambda s: value(s, "medsettle_wal_uncopied_frames") > 0
                                    and value(s, "medsettle_wal_checkpoint_lag_seconds") > 1.0,
                                    "frames held back and the lag growing")
            assert value(held, "medsettle_wal_checkpoint_failures_total") == 0  # held back is no failure
            reader.execute("COMMIT")
            wait_for_metrics(server, lambda s: value(s, "medsettle_wal_uncopied_frames") == 0
                             and value(s, "medsettle_wal_checkpoint_lag_seconds") < 1.0, "the WAL copied again")
    finally:
        if reader is not None:
            reader.close()
        server.stop()


class CheckpointFault:
    """While set, the WAL checkpointer's connections cannot be opened (as with
    too many open files), where the writer runs: in this process (writer
    thread) or in the writer process (tests/service/writer_faults.py)."""

    def __init__(self, db_path: Path) -> None:
        self.trigger = checkpoint_trigger(db_path)

    def set(self) -> None:
        self.trigger.touch()

    def clear(self) -> None:
        self.trigger.unlink()


@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
def test_a_failing_checkpointer_is_counted_logged_once_and_its_recovery_too(
        db_path, clock, bill, monkeypatch: pytest.MonkeyPatch, capfd, writer_process: bool) -> None:
    if writer_process:
        monkeypatch.setattr(writer_process_module, "_serve_batches", serve_with_failing_checkpoints)
    else:
        install_checkpoint_fault(db_path, monkeypatch.setattr)
    checkpoint_fault = CheckpointFault(db_path)
    checkpoint_fault.set()  # from the checkpointer's first round
    server = ServerThread(db_path, clock, writer_process=writer_process, metrics_address="127.0.0.1:0").start()
    lines: list[dict[str, Any]] = []
    try:
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=10.0, retries=0) as client:
            client.settle(bill())
            failing = wait_for_metrics(server, lambda s: value(s, "medsettle_wal_checkpoint_failures_total") >= 5
                                       and value(s, "medsettle_wal_checkpoint_failing") == 1, "failed rounds")
            assert value(failing, "medsettle_wal_checkpoints_total") == 0
            assert client.settle(bill()).setl_id  # settlements go on
            assert health_status(server) == health_pb2.HealthCheckResponse.SERVING
            wait_for_line(capfd, lines, "WAL checkpoint failing")
            failing_line = next(line for line in lines if line["event"] == "WAL checkpoint failing")
            assert failing_line["level"] == "error" and failing_line["detail"] == "unable to open database file"
            time.sleep(2 * 1.0 + 0.5)  # two more looks of the health watcher, more failed rounds
            checkpoint_fault.clear()
            recovered = wait_for_metrics(server, lambda s: value(s, "medsettle_wal_checkpoint_failing") == 0
                                         and value(s, "medsettle_wal_checkpoints_total") > 0, "a checkpoint again")
            wait_for_line(capfd, lines, "WAL checkpoint recovered")
            assert events(lines) == ["WAL checkpoint failing", "WAL checkpoint recovered"]  # not one per round
            recovery = next(line for line in lines if line["event"] == "WAL checkpoint recovered")
            assert recovery["level"] == "info"
            assert recovery["failed_rounds"] >= value(failing, "medsettle_wal_checkpoint_failures_total")
            assert value(recovered, "medsettle_wal_checkpoint_failures_total") >= recovery["failed_rounds"]
    finally:
        server.stop()


def test_a_wal_held_far_beyond_its_bound_makes_the_server_degraded_not_unavailable(
        db_path, clock, bill, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.setattr(sqlite_store, "WAL_BOUND_FRAMES", 16)
    monkeypatch.setattr(health, "HELD_BACK_DEGRADED_S", 1.0)
    server = ServerThread(db_path, clock, metrics_address="127.0.0.1:0").start()
    lines: list[dict[str, Any]] = []
    reader: sqlite3.Connection | None = None
    try:
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=10.0, retries=0) as client:
            client.settle(bill())
            reader = open_reader(db_path)
            for _ in range(200):  # until the WAL holds more than 4 times its bound of 16 frames
                client.settle(bill())
                if value(metrics(server), "medsettle_wal_frames") > 4 * 16:
                    break
            wait_for_metrics(server, lambda s: value(s, "medsettle_degraded", reason="wal_held_back") == 1,
                             "degraded")
            assert health_status(server) == health_pb2.HealthCheckResponse.SERVING
            assert client.settle(bill()).setl_id
            wait_for_line(capfd, lines, "WAL held back; degraded")
            reader.execute("COMMIT")
            wait_for_metrics(server, lambda s: value(s, "medsettle_degraded", reason="wal_held_back") == 0,
                             "no longer degraded")
            wait_for_line(capfd, lines, "WAL no longer held back")
        assert events(lines) == ["WAL held back; degraded", "WAL no longer held back"]
        degraded = lines[[line["event"] for line in lines].index("WAL held back; degraded")]
        assert degraded["level"] == "warning" and degraded["reason"] == "wal_held_back"
        assert "a reader" in degraded["detail"] and "its bound is 16" in degraded["detail"]
    finally:
        if reader is not None:
            reader.close()
        server.stop()

"""A failed fsync of the WAL fences the ledger (ledger/storage/fence.py):
a real writer process whose fdatasync fails (tests/service/writer_faults.py)
stops, and no replacement is started on the file (it would read what the
failed sync lost from the page cache as stored); writes are refused with
STORAGE_UNAVAILABLE saying why and what to do, health is NOT_SERVING,
/metrics and the log say so, reads stay served, and a marker beside the
ledger makes `medsettle serve` refuse the file until `medsettle db
unfence` after the runbook. A writer process that is killed is still
replaced (tests/service/test_writer_process.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ServerThread
from writer_faults import fsync_trigger, serve_with_failing_fsync
from medsettle.cli import main
from medsettle.client.metrics_scrape import scrape, value
from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.storage import writer_process
from medsettle.ledger.storage.fence import RUNBOOK, LedgerFenced, boot_id, fenced, marker_path
from medsettle.ledger.storage.wal_sync import SYNC_FAILED_EXIT

WAIT_S = 30.0


def _client(server: ServerThread) -> SettlementClient:
    return SettlementClient(server.target, tokens=server.tokens, deadline_s=20.0, retries=0)


def _health(server: ServerThread, service: str) -> int:
    with grpc.insecure_channel(server.target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=10).status


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        time.sleep(0.05)


def _log_lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]


def test_a_failed_wal_fsync_fences_the_ledger_until_the_operator_unfences_it(
        tmp_path: Path, clock, bill, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.setattr(writer_process, "_serve_batches", serve_with_failing_fsync)
    db = tmp_path / "ledger.db"
    server = ServerThread(db, clock, writer_process=True, metrics_address="127.0.0.1:0").start()
    writer = server.service.writer_process
    first, lost = bill(msgid="FENCE-1"), bill(msgid="FENCE-2")
    try:
        with _client(server) as client:
            settled = client.settle(first)  # the fsync still works
            fsync_trigger(db).touch()  # from now on the disk says EIO
            with pytest.raises(CallRefused) as refused:
                client.settle(lost)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert refused.value.reason == "STORAGE_UNAVAILABLE"
            _until(lambda: writer.fenced is not None, "the fence")
            # no replacement: the child exited for the failed sync and none was started after it
            assert writer._child.exitcode == SYNC_FAILED_EXIT and not writer._child.is_alive()
            assert (writer.restarts, writer.restart_failures) == (0, 0)

            with pytest.raises(CallRefused) as retried:  # the retry the first refusal asked for
                client.settle(lost)
            assert retried.value.code == grpc.StatusCode.UNAVAILABLE
            message = retried.value.message
            assert "fenced" in message and "fsync" in message and "Input/output error" in message
            assert RUNBOOK in message and "Retry with the same msgid" in message

            for service in ("", "medsettle.v1.SettlementService"):
                _until(lambda: _health(server, service) == health_pb2.HealthCheckResponse.NOT_SERVING,
                       f"health {service!r} NOT_SERVING")
            samples = scrape(f"http://127.0.0.1:{server.metrics_port}/metrics")
            assert value(samples, "medsettle_ledger_fenced") == 1
            assert value(samples, "medsettle_writer_up") == 0
            # the dead writer's checkpointer is not the present one: no lag growing for ever
            assert value(samples, "medsettle_wal_checkpoint_lag_seconds") == 0
            # the health watcher looked (and did not restart it): NOT_SERVING came from it
            assert (writer.restarts, writer.restart_failures, writer._child.exitcode) == (0, 0, SYNC_FAILED_EXIT)
            # reads stay served: an operator may look up what was settled
            assert client.get(first.fixmedins_code, msgid=first.msgid).setl_id == settled.setl_id
    finally:
        server.stop()

    fenced_lines = [line for line in _log_lines(capfd) if line["event"].startswith("ledger fenced")]
    assert len(fenced_lines) == 1 and fenced_lines[0]["level"] == "critical"
    assert str(marker_path(db)) == fenced_lines[0]["marker"] and RUNBOOK in fenced_lines[0]["detail"]
    record = fenced(db)
    assert record is not None and "Input/output error" in record["why"] and record["boot_id"] == boot_id()

    # Restarting on the same file (the same page cache) is refused, in either writer mode.
    for mode in (True, False):
        with pytest.raises(LedgerFenced) as refusal:
            ServerThread(db, clock, writer_process=mode).start()
        assert str(marker_path(db)) in str(refusal.value) and RUNBOOK in str(refusal.value)
    served = subprocess.run([sys.executable, "-m", "medsettle", "serve", "--db", str(db), "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 1, served.stderr
    assert str(marker_path(db)) in served.stderr and "medsettle db unfence" in served.stderr

    # The runbook: (reboot or remount,) verify, then unfence.
    runner = CliRunner()
    assert runner.invoke(main, ["verify", "--db", str(db)]).exit_code == 0
    same_boot = runner.invoke(main, ["db", "unfence", "--db", str(db)])
    assert same_boot.exit_code == 1 and "--after-remount" in same_boot.output and marker_path(db).exists()
    cleared = runner.invoke(main, ["db", "unfence", "--db", str(db), "--after-remount"])
    assert cleared.exit_code == 0, cleared.output
    assert not marker_path(db).exists() and "unfenced" in cleared.output
    fsync_trigger(db).unlink()  # the disk replaced

    server = ServerThread(db, clock, writer_process=True).start()
    try:
        with _client(server) as client:
            assert client.settle(first).setl_id == settled.setl_id  # a retry answers what is stored
            assert client.settle(lost).msgid == lost.msgid  # the refused one settles now
        assert _health(server, "") == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()


def test_unfence_of_a_ledger_not_fenced_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    result = CliRunner().invoke(main, ["db", "unfence", "--db", str(db)])
    assert result.exit_code == 0 and "not fenced" in result.output
    assert not marker_path(db).exists() and not db.exists()

"""`medsettle serve` as a real process: SERVING after start, and SIGTERM
drains in-flight calls: every acknowledged settlement is in the database."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.v1 import settlement_pb2_grpc as pb_grpc

from conftest import issue_token, make_bill


def start_server(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "medsettle", "serve", "--db", str(tmp_path / "ledger.db"),
         "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return process, f"127.0.0.1:{port_file.read_text().strip()}"


def test_sigterm_drains_in_flight_calls(tmp_path):
    token = issue_token(tmp_path / "ledger.db", "H44010100001")
    process, target = start_server(tmp_path)
    try:
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.SettlementServiceStub(channel)
            calls = [stub.Settle.future(make_bill(msgid=f"DRAIN{i:06d}"), timeout=30,
                                         metadata=[("authorization", f"Bearer {token}")]) for i in range(300)]
            time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            acknowledged, refused = [], []
            for call in calls:
                try:
                    acknowledged.append(call.result().result)
                except grpc.RpcError as error:
                    refused.append(error.code())
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert acknowledged, "some calls were in flight before SIGTERM"
    # calls refused during shutdown are refused as unavailable, never half-done
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    conn = sqlite3.connect(tmp_path / "ledger.db")
    stored = dict(conn.execute("SELECT msgid, setl_id FROM settlements").fetchall())
    for result in acknowledged:
        assert stored[result.msgid] == result.setl_id
    assert len(stored) == len(set(stored.values()))
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    balances = store.book_balances()
    store.close()
    assert trial_balance_breaks(balances) == [] and reciprocity_breaks(balances) == []

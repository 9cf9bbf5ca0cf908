"""What an operator sees in `ps` under `medsettle serve` (writer-process
mode): one child, titled `medsettle: writer`, and no multiprocessing
resource tracker beside it; the same after the writer is killed and
replaced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from medsettle.client.settlement_client import SettlementClient
from tests.conftest import ServeProcess, issue_token, make_bill


def children(pid: int) -> dict[int, str]:
    """pid -> command line of every process whose parent is pid (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the (comm)
        if parent == pid:
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def test_the_server_has_one_child_the_named_writer_also_after_a_restart(tmp_path):
    db = tmp_path / "ledger.db"
    token = issue_token(db, "H44010100001")
    server = ServeProcess(db, tmp_path, "--writer-process").start()
    try:
        assert server.process is not None
        with SettlementClient(server.target, token=token, deadline_s=10.0, retries=0) as client:
            client.settle(make_bill())
            first = children(server.process.pid)
            assert list(first.values()) == ["medsettle: writer"], first
            os.kill(next(iter(first)), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while True:  # the dead writer's batch is told to retry; a new child takes the next
                try:
                    client.settle(make_bill())
                    break
                except Exception:
                    assert time.monotonic() < deadline, server.logs()
                    time.sleep(0.2)
            second = children(server.process.pid)
            assert list(second.values()) == ["medsettle: writer"] and second.keys() != first.keys(), second
    finally:
        assert server.stop() == 0

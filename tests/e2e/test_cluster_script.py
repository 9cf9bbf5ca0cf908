"""scripts/cluster.sh as an operator runs it: a throwaway PostgreSQL, two
servers on it, the demo against both (the second answers with the first's
settlements), verify; then everything stops and nothing is left running,
whether it ends by itself or by Ctrl-C (SIGINT) while it serves on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ["bash", str(ROOT / "scripts" / "cluster.sh"), "--port", "0"]
STOPPED_WAIT_S = 30.0


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name text (the cluster's folder: PostgreSQL's -D, the servers' files)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if text in command:
                found.append(f"{entry.name}: {command}")
    return found


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _left_running(home: str, server_pids: list[int]) -> list[str]:
    """What still runs of the cluster: its servers, and any process naming its folder."""
    return [f"server {pid}" for pid in server_pids if _pid_alive(pid)] + _processes_mentioning(home)


def _assert_all_stopped(output: str) -> None:
    home = re.search(r"working folder (\S+)", output).group(1)  # type: ignore[union-attr]
    servers = re.search(r"servers on (\S+) \(pid (\d+)\) and (\S+) \(pid (\d+)\)", output)
    assert servers, output
    server_pids = [int(servers.group(2)), int(servers.group(4))]
    # A process that the script stopped may still be leaving /proc on a loaded machine: one left
    # running is one still there after STOPPED_WAIT_S.
    deadline = time.monotonic() + STOPPED_WAIT_S
    while left := _left_running(home, server_pids):
        assert time.monotonic() < deadline, f"still running {STOPPED_WAIT_S:.0f} s after the script ended: {left}"
        time.sleep(0.1)
    assert not Path(home).exists()
    assert f"cluster: stopped (servers, PostgreSQL), {home} removed" in output


@pytest.mark.timeout(300)
def test_cluster_plays_the_demo_on_two_servers_and_stops_everything():
    done = subprocess.run(CLUSTER, cwd=ROOT, capture_output=True, text=True, timeout=280)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert output.count("medsettle demo against 127.0.0.1:") == 2
    assert re.search(r"127\.0\.0\.1:\d+ answered the \d+ settlements and the reversal of 127\.0\.0\.1:\d+ "
                     r"with the same setl_ids and amounts: yes", output), output[-4000:]
    assert "the hash chain is intact" in output, output[-2000:]
    _assert_all_stopped(output)


@pytest.mark.timeout(300)
def test_ctrl_c_while_it_serves_on_stops_everything(tmp_path):
    log = tmp_path / "cluster.out"
    with log.open("w") as out:
        # Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group. As
        # there, SIGINT starts at its default: a test runner started in the background has it ignored,
        # every process it starts inherits that, and a shell cannot trap a signal ignored on entry.
        cluster = subprocess.Popen([*CLUSTER, "--keep"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 240
            while "Ctrl-C stops it all" not in log.read_text():
                assert cluster.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.2)
            os.killpg(cluster.pid, signal.SIGINT)
            assert cluster.wait(120) == 130
        finally:
            if cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGKILL)
    _assert_all_stopped(log.read_text())

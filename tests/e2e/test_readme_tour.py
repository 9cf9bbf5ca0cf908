"""The README's ten-minute tour, run as a reader would: its first block
starts the server the way `./scripts/run.sh` does (same options, the demo
included), then every later `sh` block runs in one bash session, in order,
in a fresh folder (its `.venv` is this checkout's), and every line of the
`text` block that follows a command block must be in that block's output.

Only the ports differ from the text: the server listens on free ports instead
of run.sh's (50051, 9464, ...; so the test can run beside a real server), the
blocks see those ports in place of the documented ones, and MEDSETTLE_TARGET
points the hospital-side commands there."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text("utf-8")
RUN_SH = (ROOT / "scripts" / "run.sh").read_text("utf-8")
SERVE_LINE = next(line for line in RUN_SH.splitlines() if line.startswith("exec .venv/bin/medsettle serve"))
DOCUMENTED_PORTS = tuple(re.findall(r"127\.0\.0\.1:(\d+)", SERVE_LINE))  # gRPC, metrics, gateway


def tour_blocks() -> list[tuple[str, str]]:
    """(commands, expected lines) of the tour, in order."""
    tour = README.split("## A ten-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks: list[tuple[str, str]] = []
    for kind, body in re.findall(r"^```(sh|text)\n(.*?)^```", tour, re.S | re.M):
        if kind == "sh":
            blocks.append((body, ""))
        else:
            assert blocks and not blocks[-1][1], "a text block follows a command block"
            blocks[-1] = (blocks[-1][0], body)
    return blocks


def serve_command(run_sh_args: str, ports: dict[str, str]) -> list[str]:
    """run.sh's own `medsettle serve` line, with the tour's arguments for "$@"."""
    words = shlex.split(SERVE_LINE.removeprefix("exec "))
    words = [w for w in words if w != "$@"] + shlex.split(run_sh_args)
    return [str(ROOT / ".venv" / "bin" / "medsettle"), *[swap_ports(w, ports) for w in words[1:]]]


def swap_ports(text: str, ports: dict[str, str]) -> str:
    for documented, free in ports.items():
        text = re.sub(rf"127\.0\.0\.1:{documented}\b", f"127.0.0.1:{free}", text)
    return text


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def test_the_tour_has_the_steps_the_front_page_promises():
    commands = "\n".join(body for body, _ in tour_blocks())
    for step in ("./scripts/run.sh", "grpcurl", "medsettle settle", "medsettle reverse",
                 "medsettle clear", "medsettle verify", "/metrics"):
        assert step in commands, step


@pytest.mark.timeout(240)
def test_the_readme_tour_runs_as_written(tmp_path):
    blocks = tour_blocks()
    start, *steps = blocks
    assert start[0].startswith("./scripts/run.sh"), "the tour starts the server first"
    assert "50051" in DOCUMENTED_PORTS and "9464" in DOCUMENTED_PORTS
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "var").mkdir()
    ports = {documented: free_port() for documented in DOCUMENTED_PORTS}
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "wb") as log:
        server = subprocess.Popen(serve_command(start[0].strip().removeprefix("./scripts/run.sh"), ports),
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "Serving on port" not in serve_log.read_text("utf-8", "replace"):  # the demo has ended
            assert server.poll() is None, serve_log.read_text("utf-8", "replace")
            assert time.monotonic() < deadline, "the demo did not end"
            time.sleep(0.1)
        assert_the_closing_hint_runs_as_printed(serve_log.read_text("utf-8"), tmp_path)

        script = ["set -euo pipefail"]
        for number, (commands, _) in enumerate(steps):
            script += [f"echo '@@ block {number}'", swap_ports(commands, ports)]
        env = {**os.environ, "MEDSETTLE_TARGET": f"127.0.0.1:{ports['50051']}"}
        env.pop("MEDSETTLE_TOKEN", None)
        ran = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=180)
        outputs = re.split(r"^@@ block \d+\n", ran.stdout, flags=re.M)[1:]
        assert ran.returncode == 0, f"a tour command failed:\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
        assert len(outputs) == len(steps)
        stderr_by_block = ran.stderr  # refusals print on stderr; matched against the whole session
        for number, ((commands, expected), output) in enumerate(zip(steps, outputs)):
            for line in filter(None, (l.strip() for l in expected.splitlines())):
                assert line in output or line in stderr_by_block, \
                    f"block {number} ({commands.splitlines()[0][:60]}...): {line!r} not in\n{output[-2000:]}"
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        assert server.wait(60) == 0, serve_log.read_text("utf-8", "replace")[-2000:]
    statement = tmp_path / "var" / "statements" / "44-2026-10"
    assert {"statement.json", "statement.csv", "payment_instructions.csv", "statement.html"} <= {p.name for p in statement.iterdir()}


def assert_the_closing_hint_runs_as_printed(serve_output: str, folder: Path) -> None:
    """The demo ends with the command that issues a credential: pasted as printed (one
    line, the program as it was started), it issues one."""
    hint = re.search(r"Calls need a credential: (.*)$", serve_output, re.M)
    assert hint, serve_output[-2000:]
    issued = subprocess.run(["bash", "-c", hint.group(1)], cwd=folder, capture_output=True, text=True, timeout=60)
    assert issued.returncode == 0, f"{hint.group(1)!r}: {issued.stderr}"
    assert issued.stdout.startswith("mst_") and "issued credential" in issued.stderr

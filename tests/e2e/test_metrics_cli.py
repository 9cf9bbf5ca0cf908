"""`medsettle serve --metrics-listen`: a real server process whose /metrics
a scraper reads over HTTP while hospitals settle through gRPC."""

from __future__ import annotations

import json
import urllib.request

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from medsettle.cli import main
from medsettle.client.settlement_client import SettlementClient
from tests.conftest import ServeProcess, issue_token, make_bill


def _serving(logs: str) -> dict:  # type: ignore[type-arg]
    serving = [json.loads(line) for line in logs.splitlines() if '"serving"' in line]
    assert serving, logs
    return serving[-1]


def _metrics_port(logs: str) -> int:
    return _serving(logs)["metrics_port"]


def test_serve_exposes_metrics_that_count_the_settlements(tmp_path):
    db = tmp_path / "ledger.db"
    token = issue_token(db, "H44010100001")
    server = ServeProcess(db, tmp_path, "--metrics-listen", "127.0.0.1:0", "--writer-thread").start()
    try:
        with SettlementClient(server.target, token=token, deadline_s=10.0, retries=0) as client:
            for _ in range(3):
                client.settle(make_bill())
        port = _metrics_port(server.logs())
        serving = _serving(server.logs())  # the bound addresses, not the "127.0.0.1:0" asked for
        assert serving["address"] == server.target and serving["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        settled = [s.value for s in families["medsettle_outcomes"].samples
                   if s.labels == {"method": "Settle", "result": "OK"}]
        assert settled == [3.0]
        assert families["medsettle_writer_commands"].samples[0].value == 3
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("address", ["localhost", "::1", "127.0.0.1:65536", "[::1]:x"])
def test_a_metrics_address_without_a_port_is_refused_naming_the_option(tmp_path, address):
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "x.db"), "--metrics-listen", address])
    assert result.exit_code == 2
    assert "--metrics-listen" in result.output and "HOST:PORT" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("option", ["--metrics-listen", "--listen"])
def test_a_port_in_use_stops_the_server_naming_the_option(tmp_path, option):
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "medsettle", "serve", "--db", str(tmp_path / "ledger.db"), "--writer-thread",
             "--listen", "127.0.0.1:0", "--log-format", "json", option, f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert done.returncode == 1
    assert f"Error: {option}: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_tls_files_that_are_not_valid_are_named_as_a_possible_cause(tmp_path):
    import subprocess
    import sys

    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("not a PEM file\n")
    done = subprocess.run(
        [sys.executable, "-m", "medsettle", "serve", "--db", str(tmp_path / "ledger.db"), "--writer-thread",
         "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
         "--tls-client-ca", str(tmp_path / "ca.pem")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Error: --listen: cannot listen on 127.0.0.1:0 (in use, or the --tls-* certificate or key is not valid)" \
        in done.stderr
    assert "Traceback" not in done.stderr

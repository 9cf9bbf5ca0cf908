"""`medsettle serve --http-listen` as a real process: the Hebei worked
example posted with curl in the national envelope, the demo's bill over the
gateway, and no personal data in the logs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal

import pytest

from medsettle.server.gateway.openapi import EXAMPLE_REQUESTS
from medsettle.server.gateway.yuan import dumps

from conftest import ServeProcess, issue_token

PERSONAL = re.compile(r"13010000000000000001|44010000000000000002|王建国|林秀英")


def http_port(logs: str) -> int:
    for line in logs.splitlines():
        if '"serving"' in line:
            return int(json.loads(line)["http_port"])
    raise AssertionError(f"no serving line: {logs[-2000:]}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_hebei_example_posted_with_curl_settles(tmp_path):
    db = tmp_path / "ledger.db"
    server = ServeProcess(db, tmp_path, "--http-listen", "127.0.0.1:0", "--log-level", "debug",
                          "--clock", "2026-10-15T10:30:00").start()
    try:
        token = issue_token(db, "H13010100001")
        body = tmp_path / "2207.json"
        body.write_text(dumps(EXAMPLE_REQUESTS["2207"]), "utf-8")
        url = f"http://127.0.0.1:{http_port(server.logs())}/fsi/api/rsfComIfsService/callService"
        curl = ["curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {token}",
                "-H", "Content-Type: application/json", "--data", f"@{body}", url]
        answers = [subprocess.run(curl, capture_output=True, text=True, timeout=60, check=True).stdout for _ in range(2)]
        text, status = answers[0].rsplit("\n", 1)
        assert status == "200"
        info = json.loads(text, parse_float=Decimal)["output"]["setlinfo"]
        assert (info["preselfpay_amt"], info["inscp_scp_amt"], info["acct_pay"], info["balc"]) == \
            (Decimal("0.23"), Decimal("4.29"), Decimal("4.52"), Decimal("1373.63"))
        assert '"fund_pay_sumamt":0.00' in text
        assert answers[1] == answers[0]  # the retry: the same answer, byte for byte
        bad = subprocess.run(curl[:-3] + ["--data", '{"infno": "2207", "input": 1', url],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert bad.endswith("\n400") and '"infcode":-1' in bad
    finally:
        assert server.stop() == 0
    logs = server.logs()
    assert '"refused"' in logs and '"serving"' in logs  # the log was written, at debug level
    assert not PERSONAL.search(logs), "personal data in the server's log"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_demo_settles_one_bill_over_the_gateway(tmp_path):
    command = [sys.executable, "-m", "medsettle", "serve", "--db", str(tmp_path / "demo.db"), "--listen", "127.0.0.1:0",
               "--http-listen", "127.0.0.1:0", "--demo", "--exit-after-demo"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "curl -sS -H \"Authorization: Bearer $TOKEN\"" in out
    # the curl command is printed on one line, to be copied whole
    assert re.search(r"^  curl -sS .* --data @bill\.json http://127\.0\.0\.1:\d+/fsi/api/rsfComIfsService/callService$",
                     done.stdout, re.M), done.stdout
    assert re.search(r"infcode 0, setl_id S000000000006: medfee_sumamt 34\.04, .* the same settlement: True", out), out
    assert not PERSONAL.search(done.stderr)

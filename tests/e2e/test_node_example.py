"""examples/node against a real server: `medsettle serve` on port 0 with a
fresh SQLite file, a credential issued with `medsettle credentials issue`,
`npm ci` from the committed lock file, then `node settle_hebei.js`. Its
output must show the Hebei split, the retry answered with the same setl_id,
the decoded FIELD_INVALID details and the reversal; the ledger must then
hold exactly that settlement and its reversal, and verify.

Node.js and npm are required: CI must prove the example runs, so a machine
without them fails this test instead of skipping it."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
INTEGRATING = ROOT / "docs" / "integrating.md"


def documented_output() -> list[str]:
    """The output docs/integrating.md shows, with the fixed msgid this test sends."""
    section = INTEGRATING.read_text("utf-8").split("## The Node.js example", 1)[1]
    block = re.search(r"^```text\n(.*?)^```", section, re.S | re.M)
    assert block, "docs/integrating.md shows the example's output"
    return re.sub(r"\(msgid H13010100001\d{18}\)", "(msgid NODE-HEBEI-0001)", block.group(1)).splitlines()


def medsettle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medsettle", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def example_folder():
    """The example's folder, one test run at a time: `npm ci` deletes and
    rewrites node_modules, so two suites in one checkout at once (the
    compiled and the interpreted pass) must not install under each other's
    `node` run."""
    with open(EXAMPLE / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield EXAMPLE


@pytest.mark.timeout(300)
def test_the_node_example_settles_retries_decodes_a_refusal_and_reverses(tmp_path, example_folder):
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run examples/node (install Node.js 18 or later)"
    installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True, timeout=240)
    assert installed.returncode == 0, installed.stderr[-3000:]

    db = tmp_path / "ledger.db"
    server = ServeProcess(db, tmp_path).start()
    try:
        issued = medsettle("credentials", "issue", "--db", str(db), "--code", "H13010100001", "--label", "node")
        assert issued.returncode == 0, issued.stderr
        env = {**os.environ, "MEDSETTLE_TARGET": server.target, "MEDSETTLE_TOKEN": issued.stdout.strip(),
               "MEDSETTLE_MSGID": "NODE-HEBEI-0001"}
        ran = subprocess.run([node, "settle_hebei.js"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60)
    finally:
        assert server.stop() == 0, server.logs()[-2000:]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()

    settled = re.fullmatch(r"settled (S\d{12}) \(msgid NODE-HEBEI-0001\): (.*)", lines[0])
    assert settled, lines[0]
    setl_id = settled.group(1)
    # the published Hebei example: 4.52 yuan, 0.23 first self-pay, the rest to the deductible, all from the account
    assert settled.group(2) == ("medfee_sumamt_fen 452, preselfpay_amt_fen 23, inscp_scp_amt_fen 429, "
                                "fund_pay_sumamt_fen 0, acct_pay_fen 452, balc_fen 137363")
    assert lines[1] == f"retried with the same msgid: same setl_id {setl_id}"
    assert lines[2] == "refused INVALID_ARGUMENT FIELD_INVALID (domain medsettle.v1, retry: false)"
    assert lines[3] == "  insuplc_admdvs: must be a 6-digit region code, got '13'"
    assert lines[4] == "  fee_lines[0].cnt: must be 1..100000, got 0"
    reversed_ = re.fullmatch(rf"reversed {setl_id} by (S\d{{12}}) \(SETTLEMENT_KIND_REVERSAL\): (.*)", lines[5])
    assert reversed_, lines[5]
    assert reversed_.group(2) == ("medfee_sumamt_fen -452, preselfpay_amt_fen -23, inscp_scp_amt_fen -429, "
                                  "fund_pay_sumamt_fen 0, acct_pay_fen -452, balc_fen 137815")
    assert len(lines) == 6
    assert lines == documented_output()  # what the docs show is what it prints (fresh ledger: S...1 and S...2)

    # what the server recorded: the settlement once (the retry added nothing), its reversal, no refused bill
    verified = medsettle("verify", "--db", str(db))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "checked 2 journal entries" in verified.stdout

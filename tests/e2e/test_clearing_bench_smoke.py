"""The clearing benchmark as a real process, at a small size: its generated
ledger (hash chain, posting rules) reconciles, and the statement's totals are
the generator's own, to the fen. The 1M-settlement run is documented in the
README and run by hand (it is a measurement, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("history_months", [0, 2])
def test_a_generated_month_clears_and_the_statement_matches_the_generator(tmp_path, history_months):
    """With earlier months in the ledger (some of the month's reversals undo
    their settlements), the statement still counts the cleared month only."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "clearing_bench.py"), "--settlements", "3000",
         "--agencies", "6", "--institutions", "60", "--db", str(tmp_path / "bench.db"), "--json",
         "--history-months", str(history_months)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["history_months"] == history_months
    assert report["exit_code"] == 0 and report["clear_peak_rss_mib"] > 0
    expected = report["expected_totals"]
    assert expected["setl_cnt"] > 2000
    assert {k: report["statement_totals"][k] for k in expected} == expected

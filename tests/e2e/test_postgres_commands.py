"""Every command that reads or writes a ledger takes a postgresql:// URL as
--db (or MEDSETTLE_DB), and says so clearly where it cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clock import FixedClock

from conftest import SETTLE_AT, make_bill, serving_sample


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_ledger_commands_run_on_postgres(pg_url: str, tmp_path: Path) -> None:
    with serving_sample(pg_url, tmp_path, FixedClock(SETTLE_AT)) as client:
        settled = client.settle(make_bill(msgid="CMD-1"))
        client.settle(make_bill(code="H44010100001", psn_no="13010000000000000001", insuplc="130100", msgid="CMD-2"))
    code, out = run("balances", "--db", pg_url)
    assert code == 0 and "books balance to zero; reciprocal agency accounts match" in out, out
    code, out = run("verify", env={"MEDSETTLE_DB": pg_url})
    assert code == 0 and "checked 2 journal entries" in out, out
    code, out = run("credentials", "issue", "--db", pg_url, "--code", "H44010100001", "--label", "gw")
    assert code == 0 and out.splitlines()[-1].startswith("mst_"), out
    cred_id = out.split("issued credential ", 1)[1].split()[0]
    code, listed = run("credentials", "list", "--db", pg_url)
    assert code == 0 and "gw" in listed
    code, out = run("credentials", "revoke", "--db", pg_url, cred_id)
    assert code == 0 and "revoked" in out, out
    code, out = run("audit-flags", "--db", pg_url, "--date", "2026-10-15")
    assert code == 0
    code, out = run("quotas", "--db", pg_url)
    assert code == 0 and '"host_code"' in out
    code, out = run("export-daily", "--db", pg_url, "--date", "2026-10-15", "--out", str(tmp_path / "export"),
                    "--clock", "2026-10-16T09:00:00+08:00")
    assert code == 0, out
    lines = (tmp_path / "export" / "2026-10-15" / "settlements.jsonl").read_text().splitlines()
    assert [json.loads(line)["setl_id"] for line in lines][0] == settled.setl_id and len(lines) == 2


def test_clearing_with_a_wrong_password_is_refused_clearly(pg_url: str) -> None:
    password = pg_url.split(":")[2].split("@")[0]
    wrong = pg_url.replace(f":{password}@", ":not-the-password@")
    for command in (["clear", "--province", "44", "--period", "2026-10"],
                    ["prepay", "--province", "44", "--agency", "440100", "--amount-fen", "100"]):
        code, out = run(*command, "--db", wrong)
        assert code == 1 and "cannot connect" in out and "Traceback" not in out, (command, out)
        assert "not-the-password" not in out and password not in out


def test_clearing_an_empty_database_is_refused_clearly(pg_url: str) -> None:
    code, out = run("clear", "--province", "44", "--period", "2026-10", "--db", pg_url)
    assert code == 1 and "holds no medsettle ledger" in out and "Traceback" not in out, out
    with psycopg.connect(pg_url) as conn:  # nothing was written into it
        assert conn.execute("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


def test_a_read_only_command_on_an_empty_database_is_refused(pg_url: str) -> None:
    code, out = run("verify", "--db", pg_url)
    assert code == 1 and "holds no medsettle ledger" in out and "Traceback" not in out


def test_the_demo_runs_on_postgres(pg_url: str) -> None:
    """`serve --demo` end to end on PostgreSQL: the bills, the refusals, the
    balances, the metrics endpoint; nothing fails on the backend."""
    done = subprocess.run([sys.executable, "-m", "medsettle", "serve", "--db", pg_url, "--listen", "127.0.0.1:0",
                           "--demo", "--exit-after-demo", "--metrics-listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All 4 books balance to zero; reciprocal agency accounts match." in done.stdout
    assert "Metrics at http://" in done.stdout and "Traceback" not in done.stderr
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in done.stdout + done.stderr

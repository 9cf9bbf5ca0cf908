"""The CLI end to end: the README's demo command as a real process, and the
hospital-side commands through click's runner against a real server."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from medsettle.cli import main

from conftest import make_bill

ROOT = Path(__file__).resolve().parents[2]


def test_readme_demo_command_runs_a_server_and_shows_a_balanced_ledger(tmp_path):
    db = tmp_path / "demo.db"
    command = [sys.executable, "-m", "medsettle", "serve", "--db", str(db), "--listen", "127.0.0.1:0",
               "--metrics-listen", "127.0.0.1:0", "--demo", "--exit-after-demo"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "S000000000001" in out and "1373.63" in out  # the Hebei example's balance after
    assert "same setl_id S000000000002 = S000000000002: True" in out
    assert "ALREADY_EXISTS" in out and "ALREADY_REVERSED" in out and "REVERSAL_OF_REVERSAL" in out
    assert "INVALID_ARGUMENT" in out and "fee_lines[1].cnt" in out
    assert re.search(r"All \d+ books balance to zero; reciprocal agency accounts match\.", out)
    # the cross-province bill and its reversal leave Shanghai's book at zero: not a row, but said
    assert "310000" not in out.split("Ledger balances")[1]
    assert re.search(r"match\. 4 account\(s\) at zero are not listed\.", " ".join(out.split())), out
    assert "RULE_REFUSED RX_UNKNOWN (fields: rx_id)" in " ".join(out.split())  # the invented e-prescription
    # What /metrics counted: 7 answered (4 bills, the pre-settlement, the retry, the reversal), and
    # the five refusals, the invalid bill's too (the writer validates): 12 writes in all.
    assert re.search(r"Metrics at http://127\.0\.0\.1:\d+/metrics: calls by status ALREADY_EXISTS 1, "
                     r"FAILED_PRECONDITION 3, INVALID_ARGUMENT 1, OK 7; the writer committed 12 writes", " ".join(out.split()))
    # a second run on the same database answers idempotently: nothing settled twice
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "S000000000001" in again.stdout and "S000000000006" not in again.stdout
    assert not re.search(r"44010000000000000001|陈晓明", done.stderr + again.stderr)


def test_readme_first_lines_are_the_two_commands():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    commands = [line for line in lines[:12] if line.startswith(("./", "bash "))]
    assert commands[:2] == ["./scripts/run.sh", "./scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def test_settle_get_reverse_commands(server, tmp_path):
    runner = CliRunner()
    bill = {
        "msgid": "CLI-0001", "fixmedins_code": "H44010100001", "psn_no": "44010000000000000001",
        "insutype": "INSUTYPE_EMPLOYEE_BASIC", "insuplc_admdvs": "440100", "visit_type": "VISIT_TYPE_OUTPATIENT",
        "acct_used_flag": True, "fee_lines": [{"feedetl_sn": "1", "hilist_code": "S0001", "cnt": 1, "pric_fen": 2500}],
    }
    path = tmp_path / "bill.json"
    path.write_text(json.dumps(bill))
    env = {"MEDSETTLE_TARGET": server.target, "MEDSETTLE_TOKEN": server.tokens["H44010100001"]}
    pre = runner.invoke(main, ["settle", "--pre", str(path)], env=env)
    assert pre.exit_code == 0, pre.output
    assert "setl_id" not in json.loads(pre.output)
    settled = runner.invoke(main, ["settle", str(path)], env=env)
    assert settled.exit_code == 0, settled.output
    result = json.loads(settled.output)
    assert result["medfee_sumamt_fen"] == "2500" and result["setl_id"] == "S000000000001"
    got = runner.invoke(main, ["get", "--code", "H44010100001", "--msgid", "CLI-0001"], env=env)
    assert json.loads(got.output) == result
    reversed_ = runner.invoke(main, ["reverse", "--code", "H44010100001", "--setl-id", "S000000000001", "--msgid", "CLI-R1"], env=env)
    assert reversed_.exit_code == 0, reversed_.output
    assert json.loads(reversed_.output)["medfee_sumamt_fen"] == "-2500"
    twice = runner.invoke(main, ["reverse", "--code", "H44010100001", "--setl-id", "S000000000001"], env=env)
    assert twice.exit_code == 1 and "FAILED_PRECONDITION" in twice.output and "setl_id: already reversed" in twice.output


def test_settle_command_reports_field_violations(server, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"msgid": "CLI-BAD", "fixmedins_code": "H44010100001", "psn_no": "44010000000000000001",
                                "insutype": 310, "insuplc_admdvs": "44", "visit_type": 1, "fee_lines": []}))
    env = {"MEDSETTLE_TARGET": server.target, "MEDSETTLE_TOKEN": server.tokens["H44010100001"]}
    out = CliRunner().invoke(main, ["settle", str(path)], env=env)
    assert out.exit_code == 1
    assert "INVALID_ARGUMENT" in out.output and "insuplc_admdvs:" in out.output and "fee_lines:" in out.output


def test_balances_and_load_reference(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "ref.db")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "medsettle-reference/1", "regions": [{"admdvs": "12", "name": "x"}],
                               "institutions": [], "catalogue": {"national": []}, "policies": []}))
    refused = runner.invoke(main, ["load-reference", "--db", db, str(bad)])
    assert refused.exit_code == 1 and "regions[0].admdvs" in refused.output
    from medsettle.ledger.reference.loader import sample_document

    good = tmp_path / "good.json"
    good.write_text(json.dumps(sample_document(), ensure_ascii=False))
    loaded = runner.invoke(main, ["load-reference", "--db", db, str(good)])
    assert loaded.exit_code == 0 and f"{len(sample_document()['regions'])} regions" in loaded.output
    shown = runner.invoke(main, ["balances", "--db", db])
    assert shown.exit_code == 0 and "balance to zero" in shown.output


def test_load_reference_refuses_a_person_given_twice_and_stores_nothing(tmp_path):
    from medsettle.ledger.reference.loader import sample_document

    doc = sample_document()
    later = dict(doc["persons"][0], name="a later record that would replace the first")
    doc["persons"].append(later)
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(doc, ensure_ascii=False))
    db = tmp_path / "ref.db"
    refused = CliRunner().invoke(main, ["load-reference", "--db", str(db), str(twice)])
    assert refused.exit_code == 1
    last = len(doc["persons"]) - 1
    assert f"persons[{last}].psn_no: psn_no {later['psn_no']} appears twice (first at persons[0].psn_no)" in refused.output
    conn = sqlite3.connect(db)
    try:
        stored = [conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("reference_documents", "persons")]
    finally:
        conn.close()
    assert stored == [0, 0]


def test_every_command_has_help():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and (command.help or "").split("\n")[0][:20] in result.output, name


def test_balances_refuses_a_malformed_period_instead_of_reporting_no_books(server, client, tmp_path):
    client.settle(make_bill(msgid="BAL-1"))
    db = str(server.db_path)
    october = CliRunner().invoke(main, ["balances", "--db", db, "--period", "2026-10"])
    assert october.exit_code == 0 and "payable:institution:H44010100001" in october.output
    assert re.search(r"All [1-9]\d* books balance to zero", october.output)
    # a period no posting can have was answered "All 0 books balance to zero", exit 0
    for malformed in ("2026-13", "202610", "Oct-2026"):
        refused = CliRunner().invoke(main, ["balances", "--db", db, "--period", malformed])
        assert refused.exit_code == 2 and "--period" in refused.output and "YYYY-MM" in refused.output, malformed


def test_a_file_that_is_not_a_database_is_a_one_line_refusal(tmp_path):
    not_a_db = tmp_path / "reference.json"
    not_a_db.write_text(json.dumps({"format": "medsettle-reference/1"}))
    for command in (["verify"], ["balances"], ["quotas"], ["credentials", "list"],
                    ["clear", "--province", "44", "--period", "2026-10"]):
        done = CliRunner().invoke(main, [*command, "--db", str(not_a_db)])
        assert done.exit_code == 1 and done.output == "Error: --db: SQLite: file is not a database\n", (command, done.output)
    assert json.loads(not_a_db.read_text()) == {"format": "medsettle-reference/1"}  # left as it was


def test_settle_reads_the_bill_from_stdin_with_a_dash(server):
    bill = {"msgid": "CLI-STDIN", "fixmedins_code": "H44010100001", "psn_no": "44010000000000000001",
            "insutype": "INSUTYPE_EMPLOYEE_BASIC", "insuplc_admdvs": "440100", "visit_type": "VISIT_TYPE_OUTPATIENT",
            "fee_lines": [{"feedetl_sn": "1", "hilist_code": "XB0202", "cnt": 1, "pric_fen": 452}]}
    args = ["settle", "--target", server.target, "--token", server.tokens["H44010100001"], "-"]
    settled = CliRunner().invoke(main, args, input=json.dumps(bill))
    assert settled.exit_code == 0, settled.output
    result = json.loads(settled.output)
    assert result["msgid"] == "CLI-STDIN" and result["medfee_sumamt_fen"] == "452"
    assert server.service is not None
    stored = server.service.store.reader().execute("SELECT setl_id FROM settlements WHERE msgid = 'CLI-STDIN'").fetchall()
    assert stored == [(result["setl_id"],)]
    broken = CliRunner().invoke(main, args, input="{not json")
    assert broken.exit_code == 1 and broken.output.startswith("Error: bill file:")

"""The "Internet+" demo scenario end to end, and the CLI commands of issue 7:
one patient's online follow-up, the e-prescription filled at a pharmacy in
another region, the provincial clearing that pays both; `medsettle
export-daily` (idempotent), `medsettle audit-flags`, `medsettle ecert issue`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger import ecert
from medsettle.ledger.clock import CHINA_TZ
from tests.service.test_internet import GZ_INTERNET, GZ_PSN, followup, issuing, pharmacy_sale

KEY = bytes(range(32, 64))


def owed(r) -> int:
    return r.hifp_pay_fen + r.acct_pay_fen


def test_online_followup_e_prescription_at_a_pharmacy_elsewhere_and_the_clearing_that_pays_both(client, server, tmp_path):
    visit = client.settle(issuing("RX-DEMO-1", delivery_fee_fen=1000, lines=[("S0011", 1, 2500), ("XB0303", 2, 16000)]))
    sale = client.settle(pharmacy_sale("RX-DEMO-1"))
    assert owed(visit) > 0 and owed(sale) > 0
    out = tmp_path / "statement"
    done = CliRunner().invoke(main, ["clear", "--province", "44", "--period", "2026-10", "--db", str(server.db_path),
                                     "--clock", "2026-11-02T09:00:00+08:00", "--statement-dir", str(out), "--json"])
    assert done.exit_code == 0, done.output
    statement = json.loads((out / "statement.json").read_text())
    instructions = {(i["payer"], i["payee"]): i["amount_fen"] for i in statement["payment_instructions"]}
    # Guangzhou's agency pays the internet hospital; Shenzhen's agency pays the pharmacy
    assert instructions[("440100", GZ_INTERNET)] == owed(visit)
    assert instructions[("440300", "P44030100001")] == owed(sale)
    # and Guangzhou owes Shenzhen the pharmacy's fund part through the provincial clearing
    positions = {p["party"]: p["net_fen"] for p in statement["positions"] if p["net_fen"]}
    assert positions == {"440300": owed(sale), "440100": -owed(sale)}
    # the internet hospital's fund part is reported against its host's quota
    report = CliRunner().invoke(main, ["quotas", "--db", str(server.db_path), "--year", "2026"])
    host = next(json.loads(line) for line in report.output.splitlines() if '"H44010100001"' in line)
    assert (host["used_fen"], host["reached"]) == (visit.hifp_pay_fen, False)
    assert host["remaining_fen"] == host["quota_fen"] - visit.hifp_pay_fen


def test_export_daily_is_the_closed_days_records_and_flags_and_is_idempotent(client, server, tmp_path):
    visit = client.settle(issuing("RX-EXPORT-1"))  # no offline visit on record: flagged
    client.settle(pharmacy_sale("RX-EXPORT-1"))
    out = tmp_path / "export"
    args = ["export-daily", "--date", "2026-10-15", "--db", str(server.db_path), "--out", str(out),
            "--clock", "2026-10-16T01:00:00+08:00"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    day = out / "2026-10-15"
    files = {p.name: p.read_bytes() for p in day.iterdir()}
    assert set(files) == {"settlements.jsonl", "flags.jsonl", "manifest.json"}
    records = [json.loads(line) for line in files["settlements.jsonl"].splitlines()]
    assert [r["setl_id"] for r in records] == sorted(r["setl_id"] for r in records) and len(records) == 2
    assert records[0]["visit"]["diag_code"] == "E11.9" and records[1]["clr_type"] == 41
    assert records[1]["visit"]["rx_id"] == "RX-EXPORT-1"
    flags = [json.loads(line) for line in files["flags.jsonl"].splitlines()]
    assert [(f["setl_id"], f["rule"]) for f in flags] == [(visit.setl_id, "FOLLOWUP_WITHOUT_PRIOR_VISIT")]
    manifest = json.loads(files["manifest.json"])
    assert manifest["files"]["settlements.jsonl"] == {
        "records": 2, "sha256": hashlib.sha256(files["settlements.jsonl"]).hexdigest()}
    assert manifest["files"]["flags.jsonl"]["records"] == 1
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and {p.name: p.read_bytes() for p in day.iterdir()} == files
    listed = CliRunner().invoke(main, ["audit-flags", "--date", "2026-10-15", "--db", str(server.db_path)])
    assert [json.loads(line)["rule"] for line in listed.output.splitlines()] == ["FOLLOWUP_WITHOUT_PRIOR_VISIT"]


def test_export_daily_refuses_a_day_that_is_not_over(server, tmp_path):
    refused = CliRunner().invoke(main, ["export-daily", "--date", "2026-10-15", "--db", str(server.db_path),
                                        "--out", str(tmp_path), "--clock", "2026-10-15T23:00:00+08:00"])
    assert refused.exit_code == 1 and "not over" in refused.output


def test_ecert_issue_signs_with_the_deployments_key(tmp_path):
    issued = CliRunner().invoke(main, ["ecert", "issue", "--psn-no", GZ_PSN, "--clock", "2026-10-15T10:30:00+08:00"],
                                env={ecert.KEY_ENV: KEY.hex()})
    assert issued.exit_code == 0, issued.output
    claims = ecert.verify(KEY, issued.output.strip(), dt.datetime(2026, 10, 15, 10, 31, tzinfo=CHINA_TZ))
    assert claims.psn_no == GZ_PSN and claims.expires_s - claims.issued_s == ecert.DEFAULT_TTL_S
    missing = CliRunner().invoke(main, ["ecert", "issue", "--psn-no", GZ_PSN], env={ecert.KEY_ENV: ""})
    assert missing.exit_code == 1 and "no signing key" in missing.output


def test_a_served_certificate_settles_once_and_no_token_reaches_the_logs(tmp_path, monkeypatch):
    from medsettle.client.settlement_client import CallRefused, SettlementClient
    from tests.conftest import ServeProcess, issue_token
    from tests.service.test_internet import _by_token

    monkeypatch.setenv(ecert.KEY_ENV, KEY.hex())
    db = tmp_path / "ledger.db"
    token = issue_token(db, "H44010100001")
    served = ServeProcess(db, tmp_path, "--clock", "2026-10-15T10:30:00+08:00", "--log-level", "debug").start()
    certificate = ecert.issue(KEY, GZ_PSN, dt.datetime(2026, 10, 15, 10, 29, tzinfo=CHINA_TZ))
    try:
        with SettlementClient(served.target, token=token, deadline_s=10.0, retries=0) as client:
            assert client.settle(_by_token(certificate)).psn_no == GZ_PSN
            try:
                client.settle(_by_token(certificate))
                raise AssertionError("a replayed certificate settled")
            except CallRefused as refused:
                assert refused.metadata["rule"] == "ECERT_REPLAY"
    finally:
        served.stop()
    logs = served.logs()
    assert "settled" in logs  # debug logging was on: every settlement logged
    for part in certificate.split(".")[1:]:
        assert part not in logs


def test_audit_flags_by_institution_and_a_malformed_date_refused(client, server):
    visit = client.settle(followup())  # flagged: no offline visit on record
    db = str(server.db_path)
    mine = CliRunner().invoke(main, ["audit-flags", "--date", "2026-10-15", "--db", db, "--code", GZ_INTERNET])
    assert mine.exit_code == 0, mine.output
    assert [(f["setl_id"], f["fixmedins_code"]) for f in map(json.loads, mine.output.splitlines())] == \
        [(visit.setl_id, GZ_INTERNET)]
    other = CliRunner().invoke(main, ["audit-flags", "--date", "2026-10-15", "--db", db, "--code", "H44010100001"])
    assert other.exit_code == 0 and other.output == ""
    # 20261015 is an ISO "basic" date to Python, but the flags are stored by YYYY-MM-DD day:
    # accepting it listed nothing, as if the day had no flags
    for malformed in ("20261015", "2026-10-1", "2026-13-01"):
        refused = CliRunner().invoke(main, ["audit-flags", "--date", malformed, "--db", db])
        assert refused.exit_code == 2 and "must be YYYY-MM-DD" in refused.output, malformed


def test_medsettle_reverse_of_a_dispensed_visit_says_the_pharmacy_reverses_its_sale_first(client, server):
    visit = client.settle(issuing("RX-CLI-REV", items=[("XA0102", 2), ("XB0201", 1)]))
    sold = client.settle(pharmacy_sale("RX-CLI-REV"))

    def reverse(code: str, setl_id: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, ["reverse", "--target", server.target, "--token", server.tokens[code],
                                         "--code", code, "--setl-id", setl_id])

    refused = reverse(GZ_INTERNET, visit.setl_id)
    assert refused.exit_code == 1
    assert "RX_DISPENSED" in refused.output and "the pharmacy reverses its sale" in refused.output
    assert "  setl_id: " in refused.output
    assert reverse("P44030100001", sold.setl_id).exit_code == 0
    done = reverse(GZ_INTERNET, visit.setl_id)
    assert done.exit_code == 0, done.output
    assert visit.setl_id in done.output

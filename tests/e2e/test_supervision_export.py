"""`medsettle export-daily` carries what the provinces ask for (fee lines
with amounts, prescriber and pharmacist, prescription contents, the
institution's details) and reports a day exported after a region's deadline
(Fujian: the next day by 06:00)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from medsettle.cli import main
from tests.service.test_internet import GZ_INTERNET, followup, issuing, pharmacy_sale

FJ_INTERNET = "H35010100901"


def _export(db, out, clock: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["export-daily", "--date", "2026-10-15", "--db", str(db), "--out", str(out),
                                     "--clock", clock])


def test_the_export_carries_fee_lines_prescriptions_staff_and_institutions(client, server, tmp_path):
    visit = client.settle(issuing("RX-SUP-1"))
    sale = pharmacy_sale("RX-SUP-1")
    sale.pharmacist_id = "PH0042"
    sold = client.settle(sale)
    done = _export(server.db_path, tmp_path, "2026-10-16T01:00:00+08:00")
    assert done.exit_code == 0, done.output
    assert "LATE" not in done.output  # Guangzhou sets no deadline
    records = {r["setl_id"]: r for r in map(json.loads, (tmp_path / "2026-10-15" / "settlements.jsonl").read_text().splitlines())}
    issued = records[visit.setl_id]
    assert [(line["hilist_code"], line["det_item_fee_sumamt_fen"], line["inscp_scp_amt_fen"]) for line in issued["fee_lines"]] == [
        ("S0011", 2500, visit.line_splits[0].inscp_scp_amt_fen), ("XA0102", 3000, visit.line_splits[1].inscp_scp_amt_fen)]
    assert issued["institution"] == {"code": GZ_INTERNET, "name": "Guangzhou First People's Internet Hospital",
                                     "kind": "internet_hospital", "level": 3, "admdvs": "440100",
                                     "host_code": "H44010100001"}
    assert issued["prescription_issued"] == {
        "rx_id": "RX-SUP-1", "prescriber_id": "DR0001", "issued_day": "2026-10-15", "valid_to": "2026-10-17",
        "items": [{"hilist_code": "XA0102", "cnt": 2}, {"hilist_code": "XB0201", "cnt": 1}], "voided_by": None}
    filled = records[sold.setl_id]["prescription_filled"]
    assert (filled["pharmacist_id"], filled["prescriber_id"], filled["rx_id"]) == ("PH0042", "DR0001", "RX-SUP-1")
    assert filled["taken"] == [{"hilist_code": "XA0102", "cnt": 2}, {"hilist_code": "XB0201", "cnt": 1}]
    assert records[sold.setl_id]["institution"]["kind"] == "pharmacy"
    manifest = json.loads((tmp_path / "2026-10-15" / "manifest.json").read_text())
    assert manifest["format"] == "medsettle-supervision-daily/2" and manifest["deadlines"] == {}


def test_a_fujian_day_exported_after_six_the_next_morning_is_reported_late(client, server, tmp_path):
    client.settle(followup(code=FJ_INTERNET, psn_no="35010000000000000001", insuplc="350100"))
    client.settle(followup())  # Guangzhou: no deadline
    on_time = _export(server.db_path, tmp_path / "a", "2026-10-16T05:59:00+08:00")
    assert on_time.exit_code == 0, on_time.output
    assert "LATE" not in on_time.output
    manifest = json.loads((tmp_path / "a" / "2026-10-15" / "manifest.json").read_text())
    assert manifest["deadlines"] == {"350100": "2026-10-16T06:00:00+08:00"}
    late = _export(server.db_path, tmp_path / "b", "2026-10-16T07:30:00+08:00")
    assert late.exit_code == 0, late.output
    lines = [line for line in late.output.splitlines() if line.startswith("LATE")]
    assert lines == ["LATE: region 350100's export of 2026-10-15 was due by 2026-10-16 06:00 China time; "
                     "exported 2026-10-16 07:30"]
    # the files do not depend on when they were written
    assert (tmp_path / "a" / "2026-10-15" / "manifest.json").read_bytes() == (
        tmp_path / "b" / "2026-10-15" / "manifest.json").read_bytes()

"""`medsettle export-daily` carries what the provinces ask for (fee lines
with amounts, prescriber and pharmacist, prescription contents, the
institution's details) and reports a day exported after a region's deadline
(Fujian: the next day by 06:00)."""

from __future__ import annotations

import datetime as dt
import itertools
import json

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.cli import main
from medsettle.ledger.supervision.export import export_day
from medsettle.v1 import settlement_pb2 as pb
from tests.conftest import make_bill
from tests.service.test_internet import (  # noqa: F401  serve_with: a fixture
    GZ_INTERNET, followup, issuing, pharmacy_sale, serve_with,
)

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
    assert (filled["pharmacist_id"], filled["prescriber_id"], filled["rx_id"], filled["recorded"]) == (
        "PH0042", "DR0001", "RX-SUP-1", True)
    assert filled["taken"] == [{"hilist_code": "XA0102", "cnt": 2}, {"hilist_code": "XB0201", "cnt": 1}]
    assert records[sold.setl_id]["institution"]["kind"] == "pharmacy"
    manifest = json.loads((tmp_path / "2026-10-15" / "manifest.json").read_text())
    assert manifest["format"] == "medsettle-supervision-daily/3" and manifest["deadlines"] == {}


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


def _records(out) -> dict:  # type: ignore[no-untyped-def]
    return {r["setl_id"]: r for r in map(json.loads, (out / "2026-10-15" / "settlements.jsonl").read_text().splitlines())}


def test_fee_lines_carry_quantity_and_unit_price_and_a_reversal_negates_the_quantity(client, server, tmp_path):
    visit = client.settle(followup(lines=[("S0011", 1, 2500), ("XA0102", 3, 1450)]))
    otc = make_bill(code="P44030100001", visit=pb.VISIT_TYPE_PHARMACY, lines=[("XC0401", 2, 1200)])
    otc.pharmacist_id = "PH0051"
    sold = client.settle(otc)
    reversal = client.reverse("REV-OTC-1", "P44030100001", sold.setl_id)
    export_day(server.db_path, dt.date(2026, 10, 15), tmp_path)
    records = _records(tmp_path)
    assert [(line["hilist_code"], line["cnt"], line["pric_fen"], line["det_item_fee_sumamt_fen"])
            for line in records[visit.setl_id]["fee_lines"]] == [("S0011", 1, 2500, 2500), ("XA0102", 3, 1450, 4350)]
    # a pharmacy sale without a prescription: its pharmacist is kept too
    assert records[sold.setl_id]["visit"]["pharmacist_id"] == "PH0051"
    assert records[sold.setl_id]["prescription_filled"] is None
    assert records[visit.setl_id]["visit"]["pharmacist_id"] == ""
    assert [(line["hilist_code"], line["cnt"], line["pric_fen"], line["det_item_fee_sumamt_fen"])
            for line in records[reversal.setl_id]["fee_lines"]] == [("XC0401", -2, 1200, -2400)]


def test_a_prescription_never_recorded_here_is_exported_with_its_pharmacist(serve_with, tmp_path):
    def unrecorded_allowed(doc):
        doc["internet_defaults"]["rx_record_required"] = False

    server, client = serve_with(unrecorded_allowed)
    sale = pharmacy_sale("RX-PAPER-7", prescriber="H44010100001")
    sale.pharmacist_id = "PH0063"
    sold = client.settle(sale)
    export_day(server.db_path, dt.date(2026, 10, 15), tmp_path)
    record = _records(tmp_path)[sold.setl_id]
    assert record["visit"]["pharmacist_id"] == "PH0063"
    assert record["prescription_filled"] == {
        "recorded": False, "prescribing_code": "H44010100001", "rx_id": "RX-PAPER-7", "pharmacist_id": "PH0063",
        "prescriber_id": None, "prescribed": None,
        "taken": [{"hilist_code": "XA0102", "cnt": 2}, {"hilist_code": "XB0201", "cnt": 1}]}


_bill_no = itertools.count()
_lines = st.lists(st.tuples(st.sampled_from(["S0001", "XA0101", "XA0102", "XB0201", "XC0401"]),
                            st.integers(1, 50), st.integers(1, 90_000)), min_size=1, max_size=6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_lines)
def test_every_exported_line_is_what_was_billed(client, server, tmp_path, lines):
    """Whatever the bill, each exported line has the billed code, quantity and
    unit price, and its amount is their product."""
    settled = client.settle(make_bill(lines=lines, msgid=f"EXP{next(_bill_no):09d}"))
    out = tmp_path / f"out{settled.setl_id}"
    export_day(server.db_path, dt.date(2026, 10, 15), out)
    exported = _records(out)[settled.setl_id]["fee_lines"]
    assert [(line["hilist_code"], line["cnt"], line["pric_fen"]) for line in exported] == lines
    assert all(line["det_item_fee_sumamt_fen"] == line["cnt"] * line["pric_fen"] for line in exported)

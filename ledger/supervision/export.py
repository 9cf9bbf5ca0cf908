"""The daily export for the fund-supervision platform, and the flag listing.

`medsettle export-daily --date D` writes, for the China-time day D (run it
after the day, e.g. between 0:00 and 6:00 the next morning as Fujian and
Jilin require), into DIR/D/:

- `settlements.jsonl`: every settlement and reversal recorded that day, one
  JSON object a line, in setl_id order, with the visit facts the audit saw,
  its fee lines with their quantity, unit price and amounts, the
  institution's details (from the reference data in force), the
  e-prescription it issued (prescriber and contents) and the one it filled
  (what it took, the pharmacist; also for a prescription never recorded
  here);
- `flags.jsonl`: every audit flag raised that day, in the order raised;
- `manifest.json`: format, date, each file's record count and SHA-256, and
  when the day's export is due for each region with records that has a
  deadline (region rule export_deadline).

Idempotent: the content depends only on the stored records of a closed day
(a later reversal belongs to its own day), keys are sorted and no run time
is written, so a re-run writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.progress import NO_PROGRESS, Hooks, counted
from medsettle.ledger.reference.loader import parse_document
from medsettle.ledger.reference.models import ReferenceData
from medsettle.ledger.settlement.model import AMOUNT_FIELDS, SettlementKind
from medsettle.ledger.storage.backends import connect_read_only
from medsettle.ledger.storage.sqlite import FLAG_COLUMNS, flags_of_day, to_us  # noqa: F401
from medsettle.ledger.supervision.deadlines import Deadline, deadlines

FORMAT = "medsettle-supervision-daily/3"
REVERSAL = int(SettlementKind.REVERSAL)


@dataclass(frozen=True, slots=True)
class ExportResult:
    directory: Path
    settlements: int
    flags: int
    manifest_sha256: str
    deadlines: tuple[Deadline, ...] = ()  # of the regions with records that day


def day_bounds_us(day: dt.date) -> tuple[int, int]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return to_us(start), to_us(start + dt.timedelta(days=1))


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n").encode()


SETTLEMENT_COLUMNS = ("setl_id", "kind", "orig_setl_id", "msgid", "fixmedins_code", "payee_code", "psn_no", "insutype",
                      "insuplc_admdvs", "mdtrtarea_admvs", "clr_type", "pay_loc", "setl_time_us", "setlym",
                      *AMOUNT_FIELDS, "audit_flags")
LINE_FIELDS = ("feedetl_sn", "chrgitm_lv", "det_item_fee_sumamt_fen", "fulamt_ownpay_amt_fen", "overlmt_selfpay_fen",
               "preselfpay_amt_fen", "inscp_scp_amt_fen")


def _institution(reference: ReferenceData | None, code: str) -> dict[str, Any] | None:
    found = reference.institutions.get(code) if reference is not None else None
    if found is None:
        return None
    return {"code": found.code, "name": found.name, "kind": found.kind.value, "level": found.level,
            "admdvs": found.admdvs, "host_code": found.host_code}


def line_facts(text: str) -> list[tuple[int, int]]:
    """visit_log.line_facts ("cnt:pric_fen" per fee line, joined by ","; "" for
    a visit settled before they were recorded) as (cnt, pric_fen) per line."""
    if not text:
        return []
    return [(int(cnt), int(price)) for cnt, _, price in (fact.partition(":") for fact in text.split(","))]


def _fills_of_day(conn: sqlite3.Connection, start_us: int, end_us: int) -> dict[str, dict[str, Any]]:
    """setl_id -> the prescription a sale of the day filled and what it took:
    a recorded one's contents; for one never recorded here (filled once),
    what the sale's lines took."""
    fills: dict[str, dict[str, Any]] = {}
    for setl_id, prescriber, rx_id, pharmacist, codes, facts in conn.execute(
        "SELECT f.setl_id, f.prescribing_code, f.rx_id, v.pharmacist_id, v.item_codes, v.line_facts "
        "FROM rx_fills f JOIN settlements s ON s.setl_id = f.setl_id LEFT JOIN visit_log v ON v.setl_id = f.setl_id "
        "WHERE s.setl_time_us >= ? AND s.setl_time_us < ?", (start_us, end_us)):
        taken: dict[str, int] = {}
        for code, (cnt, _) in zip((codes or "").split(","), line_facts(facts or "")):
            taken[code] = taken.get(code, 0) + cnt
        fills[setl_id] = {
            "recorded": False, "prescribing_code": prescriber, "rx_id": rx_id, "pharmacist_id": pharmacist,
            "prescriber_id": None, "prescribed": None,
            "taken": [{"hilist_code": c, "cnt": n} for c, n in sorted(taken.items())] if taken else None}
    for setl_id, prescriber, rx_id, code, cnt, pharmacist, prescriber_id, items in conn.execute(
        "SELECT f.setl_id, f.prescribing_code, f.rx_id, f.hilist_code, f.cnt, f.pharmacist_id, p.prescriber_id, p.items "
        "FROM rx_fill_items f JOIN settlements s ON s.setl_id = f.setl_id "
        "JOIN prescriptions p ON p.prescribing_code = f.prescribing_code AND p.rx_id = f.rx_id "
        "WHERE s.setl_time_us >= ? AND s.setl_time_us < ? ORDER BY f.setl_id, f.hilist_code", (start_us, end_us)):
        fill = fills.setdefault(setl_id, {
            "recorded": True, "prescribing_code": prescriber, "rx_id": rx_id, "pharmacist_id": pharmacist, "prescriber_id": prescriber_id,
            "prescribed": [{"hilist_code": c, "cnt": n} for c, n in json.loads(items)], "taken": []})
        fill["taken"].append({"hilist_code": code, "cnt": cnt})
    return fills


def _day_of_settlements(conn: sqlite3.Connection) -> str:
    """The settlements table as the day's records read it: on SQLite through
    the time index by name, since left to itself SQLite reads the whole
    ledger in setl_id order to save sorting the day's rows (PostgreSQL
    weighs both with its statistics)."""
    return "settlements s INDEXED BY settlements_by_time" if isinstance(conn, sqlite3.Connection) else "settlements s"


def _settlement_records(conn: sqlite3.Connection, day: dt.date,
                        reference: ReferenceData | None = None) -> Iterator[dict[str, Any]]:
    start_us, end_us = day_bounds_us(day)
    fills = _fills_of_day(conn, start_us, end_us)
    cursor = conn.execute(
        f"SELECT {', '.join('s.' + c for c in SETTLEMENT_COLUMNS)}, s.line_splits, "
        "v.visit_type, v.diag_code, v.rx_id, v.item_codes, o.item_codes, v.pharmacist_id, v.line_facts, o.line_facts, "
        "p.rx_id, p.prescriber_id, p.issued_day, p.valid_to, p.items, p.voided_setl_id "
        f"FROM {_day_of_settlements(conn)} LEFT JOIN visit_log v ON v.setl_id = s.setl_id "
        "LEFT JOIN visit_log o ON o.setl_id = s.orig_setl_id "
        "LEFT JOIN prescriptions p ON p.setl_id = s.setl_id "
        "WHERE s.setl_time_us >= ? AND s.setl_time_us < ? ORDER BY s.setl_id",
        (start_us, end_us),
    )
    width = len(SETTLEMENT_COLUMNS)
    for row in cursor:
        record = dict(zip(SETTLEMENT_COLUMNS, row[:width]))
        record["audit_flags"] = [f for f in record["audit_flags"].split(",") if f]
        (line_splits, visit_type, diag, rx_id, items, original_items, pharmacist, facts, original_facts,
         issued_rx, prescriber_id, issued_day, valid_to, rx_items, voided_by) = row[width:]
        record["visit"] = None if visit_type is None else {
            "visit_type": visit_type, "diag_code": diag, "rx_id": rx_id, "items": items.split(",") if items else [],
            "pharmacist_id": pharmacist,
        }
        # a reversal's lines are its original's, its quantities negated as its
        # amounts are: det_item_fee_sumamt_fen = cnt * pric_fen on every line
        codes = (items or original_items or "").split(",")
        quantities = line_facts(facts or original_facts or "")
        if record["kind"] == REVERSAL:
            quantities = [(-cnt, price) for cnt, price in quantities]
        record["fee_lines"] = [
            {"hilist_code": codes[i] if i < len(codes) else "",
             "cnt": quantities[i][0] if i < len(quantities) else None,
             "pric_fen": quantities[i][1] if i < len(quantities) else None,
             **dict(zip(LINE_FIELDS, line))}
            for i, line in enumerate(json.loads(line_splits))
        ]
        record["institution"] = _institution(reference, record["fixmedins_code"])
        record["prescription_issued"] = None if issued_rx is None else {
            "rx_id": issued_rx, "prescriber_id": prescriber_id, "issued_day": issued_day, "valid_to": valid_to,
            "items": [{"hilist_code": c, "cnt": n} for c, n in json.loads(rx_items)], "voided_by": voided_by,
        }
        record["prescription_filled"] = fills.get(record["setl_id"])
        yield record


def _reference_in_force(conn: sqlite3.Connection) -> ReferenceData | None:
    row = conn.execute("SELECT body FROM reference_documents ORDER BY doc_no DESC LIMIT 1").fetchone()
    return None if row is None else parse_document(json.loads(row[0]))[0]


def _regions_of_day(conn: sqlite3.Connection, day: dt.date) -> list[str]:
    start_us, end_us = day_bounds_us(day)
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT mdtrtarea_admvs FROM settlements WHERE setl_time_us >= ? AND setl_time_us < ?",
        (start_us, end_us))]


def _write_atomically(path: Path, chunks: Iterator[bytes]) -> tuple[int, str]:
    """Writes the lines to path via a temporary file; (lines, sha256)."""
    digest = hashlib.sha256()
    count = 0
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            count += 1
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return count, digest.hexdigest()


def _records_of_day(conn: sqlite3.Connection, day: dt.date) -> int:
    """Settlements and flags of the day: what the progress bar counts to."""
    start_us, end_us = day_bounds_us(day)
    settlements = conn.execute("SELECT COUNT(*) FROM settlements WHERE setl_time_us >= ? AND setl_time_us < ?",
                               (start_us, end_us)).fetchone()[0]
    flags = conn.execute("SELECT COUNT(*) FROM audit_flags WHERE flag_day = ?", (day.isoformat(),)).fetchone()[0]
    return int(settlements) + int(flags)


def export_day(db_path: str | Path, day: dt.date, out_dir: str | Path, hooks: Hooks = NO_PROGRESS) -> ExportResult:
    """Writes the day's export (see the module doc); the day must be over.
    Reads the database read only (NotALedgerError if it holds no ledger).
    hooks hear of the records to write and of those written."""
    conn = connect_read_only(db_path)
    try:
        directory = Path(out_dir) / day.isoformat()
        directory.mkdir(parents=True, exist_ok=True)
        conn.execute("BEGIN")  # one snapshot for both files
        hooks.start(_records_of_day(conn, day))
        reference = _reference_in_force(conn)
        due = deadlines(reference.internet, _regions_of_day(conn, day), day) if reference is not None else []
        settlements, settlements_sha = _write_atomically(
            directory / "settlements.jsonl",
            (_line(r) for r in counted(_settlement_records(conn, day, reference), hooks)))
        flags, flags_sha = _write_atomically(
            directory / "flags.jsonl", (_line(r) for r in counted(flags_of_day(conn, day.isoformat()), hooks)))
        conn.execute("COMMIT")
    finally:
        conn.close()
    manifest = {
        "format": FORMAT,
        "date": day.isoformat(),
        "timezone": "Asia/Shanghai",
        "files": {
            "settlements.jsonl": {"records": settlements, "sha256": settlements_sha},
            "flags.jsonl": {"records": flags, "sha256": flags_sha},
        },
        "deadlines": {d.admdvs: d.due.isoformat() for d in due},
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    _write_atomically(directory / "manifest.json", iter([body]))
    return ExportResult(directory, settlements, flags, hashlib.sha256(body).hexdigest(), tuple(due))

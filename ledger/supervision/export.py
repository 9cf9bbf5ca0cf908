"""The daily export for the fund-supervision platform, and the flag listing.

`medsettle export-daily --date D` writes, for the China-time day D (run it
after the day, e.g. between 0:00 and 6:00 the next morning as Fujian and
Jilin require), into DIR/D/:

- `settlements.jsonl`: every settlement and reversal recorded that day, one
  JSON object a line, in setl_id order, with the visit facts the audit saw;
- `flags.jsonl`: every audit flag raised that day, in the order raised;
- `manifest.json`: format, date, each file's record count and SHA-256.

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
from medsettle.ledger.settlement.model import AMOUNT_FIELDS
from medsettle.ledger.storage.sqlite import FLAG_COLUMNS, connect_read_only, flags_of_day, to_us  # noqa: F401

FORMAT = "medsettle-supervision-daily/1"


@dataclass(frozen=True, slots=True)
class ExportResult:
    directory: Path
    settlements: int
    flags: int
    manifest_sha256: str


def day_bounds_us(day: dt.date) -> tuple[int, int]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return to_us(start), to_us(start + dt.timedelta(days=1))


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _settlement_records(conn: sqlite3.Connection, day: dt.date) -> Iterator[dict[str, Any]]:
    start_us, end_us = day_bounds_us(day)
    columns = ("setl_id", "kind", "orig_setl_id", "msgid", "fixmedins_code", "payee_code", "psn_no", "insutype",
               "insuplc_admdvs", "mdtrtarea_admvs", "clr_type", "pay_loc", "setl_time_us", "setlym",
               *AMOUNT_FIELDS, "audit_flags")
    cursor = conn.execute(
        f"SELECT {', '.join('s.' + c for c in columns)}, v.visit_type, v.diag_code, v.rx_id, v.item_codes "
        "FROM settlements s LEFT JOIN visit_log v ON v.setl_id = s.setl_id "
        "WHERE s.setl_time_us >= ? AND s.setl_time_us < ? ORDER BY s.setl_id",
        (start_us, end_us),
    )
    for row in cursor:
        record = dict(zip(columns, row[:len(columns)]))
        record["audit_flags"] = [f for f in record["audit_flags"].split(",") if f]
        visit_type, diag, rx_id, items = row[len(columns):]
        record["visit"] = None if visit_type is None else {
            "visit_type": visit_type, "diag_code": diag, "rx_id": rx_id, "items": items.split(",") if items else [],
        }
        yield record


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
        settlements, settlements_sha = _write_atomically(
            directory / "settlements.jsonl", (_line(r) for r in counted(_settlement_records(conn, day), hooks)))
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
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    _write_atomically(directory / "manifest.json", iter([body]))
    return ExportResult(directory, settlements, flags, hashlib.sha256(body).hexdigest())

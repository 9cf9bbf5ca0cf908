"""SQL of the "Internet+" and fund-supervision state: host quota use,
e-prescription fills, e-cert nonces, the visit log and the audit flags.
Runs on the settlement writer's connection inside its open transaction, so
this state commits or rolls back with the settlements it belongs to."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from medsettle.ledger.reference.internet import Agreement, AgreementStatus, Payee
from medsettle.ledger.settlement.prescriptions import RxRecord
from medsettle.ledger.storage.port import InternetWrite
from medsettle.ledger.storage.sqlite import INSERT_ALL_OR_NOTHING, chunks, insert_rows, marks, storage_errors



AGREEMENT_COLUMNS = ("agreement_no", "internet_code", "host_code", "visit_types", "item_kinds", "valid_from",
                     "valid_to", "status", "payee")


def _agreement(row: Any) -> Agreement:
    no, internet, host, visit_types, item_kinds, valid_from, valid_to, status, payee = row
    return Agreement(no, internet, host, frozenset(v for v in visit_types.split(",") if v),
                     frozenset(k for k in item_kinds.split(",") if k), valid_from, valid_to,
                     AgreementStatus(status), Payee(payee))


class SqliteInternetState:
    """The InternetState of ledger/storage/port.py on the writer's SQLite connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with storage_errors:
            return self._conn.execute(sql, params).fetchone()

    def quota_used(self, host_code: str, year: int) -> int:
        row = self._one("SELECT used_fen FROM host_quota_use WHERE host_code = ? AND year = ?", (host_code, year))
        return row[0] if row else 0

    def rx_filled_by(self, prescribing_code: str, rx_id: str) -> str | None:
        row = self._one(
            "SELECT setl_id FROM rx_fills WHERE prescribing_code = ? AND rx_id = ? AND reversal_setl_id IS NULL",
            (prescribing_code, rx_id),
        )
        return row[0] if row else None

    def rx_fill_of(self, setl_id: str) -> bool:
        return self._one("SELECT 1 FROM rx_fills WHERE setl_id = ?", (setl_id,)) is not None

    def rx_record(self, prescribing_code: str, rx_id: str) -> RxRecord | None:
        row = self._one(
            "SELECT setl_id, psn_no, prescriber_id, issued_day, valid_to, items, voided_setl_id FROM prescriptions "
            "WHERE prescribing_code = ? AND rx_id = ?", (prescribing_code, rx_id))
        if row is None:
            return None
        setl_id, psn_no, prescriber_id, issued_day, valid_to, items, voided = row
        return RxRecord(prescribing_code, rx_id, setl_id, psn_no, prescriber_id, issued_day, valid_to,
                        tuple((code, cnt) for code, cnt in json.loads(items)), voided is not None)

    def rx_filled(self, prescribing_code: str, rx_id: str) -> dict[str, int]:
        """hilist_code -> quantity the prescription's live (not reversed) fills took."""
        with storage_errors:
            rows = self._conn.execute(
                "SELECT hilist_code, SUM(cnt) FROM rx_fill_items WHERE prescribing_code = ? AND rx_id = ? "
                "AND reversal_setl_id IS NULL GROUP BY hilist_code", (prescribing_code, rx_id)).fetchall()
        return {code: filled for code, filled in rows}

    def rx_fill_items_of(self, setl_id: str) -> list[tuple[str, str, str, int]]:
        """(prescriber, rx_id, hilist_code, cnt) a live sale took from a recorded prescription."""
        with storage_errors:
            rows = self._conn.execute(
                "SELECT prescribing_code, rx_id, hilist_code, cnt FROM rx_fill_items "
                "WHERE setl_id = ? AND reversal_setl_id IS NULL", (setl_id,)).fetchall()
        return [(prescriber, rx_id, code, cnt) for prescriber, rx_id, code, cnt in rows]

    def rx_issued_by(self, setl_id: str) -> tuple[str, str] | None:
        """(prescriber, rx_id) of the prescription a visit issued, if any."""
        row = self._one("SELECT prescribing_code, rx_id FROM prescriptions WHERE setl_id = ?", (setl_id,))
        return (row[0], row[1]) if row else None

    def agreements_of(self, internet_codes: list[str]) -> list[Agreement]:
        """The operators' agreements of these internet hospitals (all: every one stored)."""
        sql = f"SELECT {', '.join(AGREEMENT_COLUMNS)} FROM internet_agreements"
        with storage_errors:
            if not internet_codes:
                return [_agreement(row) for row in self._conn.execute(sql + " ORDER BY agreement_no")]
            found = []
            for chunk in chunks(internet_codes):
                found.extend(_agreement(row) for row in self._conn.execute(
                    f"{sql} WHERE internet_code IN ({marks(len(chunk))}) ORDER BY agreement_no", chunk))
            return found

    def save_agreement(self, agreement: Agreement, changed_us: int) -> None:
        """Adds an agreement, or replaces the one of the same agreement_no."""
        a = agreement
        with storage_errors:
            self._conn.execute(
                f"INSERT INTO internet_agreements ({', '.join(AGREEMENT_COLUMNS)}, changed_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agreement_no) DO UPDATE SET "
                "internet_code = excluded.internet_code, host_code = excluded.host_code, "
                "visit_types = excluded.visit_types, item_kinds = excluded.item_kinds, "
                "valid_from = excluded.valid_from, valid_to = excluded.valid_to, status = excluded.status, "
                "payee = excluded.payee, changed_us = excluded.changed_us",
                (a.agreement_no, a.internet_code, a.host_code, ",".join(sorted(a.visit_types)),
                 ",".join(sorted(a.item_kinds)), a.valid_from, a.valid_to, a.status.value, a.payee.value, changed_us))

    def nonce_seen(self, nonce: str) -> bool:
        return self._one("SELECT 1 FROM ecert_nonces WHERE nonce = ?", (nonce,)) is not None

    def day_visits(self, psn_nos: list[str], day: str) -> dict[str, tuple[int, set[str]]]:
        """psn_no -> (visits that day, item codes billed that day)."""
        found: dict[str, tuple[int, set[str]]] = {}
        for chunk in chunks(psn_nos):
            with storage_errors:
                rows = self._conn.execute(
                    f"SELECT psn_no, item_codes FROM visit_log WHERE visit_day = ? AND psn_no IN ({marks(len(chunk))})",
                    (day, *chunk),
                ).fetchall()
            for psn_no, codes in rows:
                visits, items = found.get(psn_no, (0, set()))
                items.update(c for c in codes.split(",") if c)
                found[psn_no] = (visits + 1, items)
        return found

    def offline_visit_since(self, psn_no: str, diag_category: str, since_day: str) -> bool:
        """Whether an offline (outpatient or inpatient) visit of the person for
        the diagnosis category (first 3 characters of ICD-10) is on record."""
        return self._one(
            "SELECT 1 FROM visit_log WHERE psn_no = ? AND visit_day >= ? AND visit_type IN (1, 2) "
            "AND substr(diag_code, 1, 3) = ? LIMIT 1",
            (psn_no, since_day, diag_category),
        ) is not None

    def quota_uses(self) -> dict[tuple[str, int], int]:
        """(host_code, year) -> fund payments counted against the quota."""
        with storage_errors:
            rows = self._conn.execute("SELECT host_code, year, used_fen FROM host_quota_use").fetchall()
        return {(host, year): used for host, year, used in rows}

    def prune_nonces(self, expired_before_us: int) -> None:
        """Forgets certificates that expired long ago: verification refuses them anyway."""
        with storage_errors:
            self._conn.execute("DELETE FROM ecert_nonces WHERE expires_us < ?", (expired_before_us,))

    def write(self, batch: InternetWrite) -> None:
        """The batch's rows; a statement with no rows is not run (each costs a step of the batch's fixed cost)."""
        conn = self._conn
        with storage_errors:
            if batch.quota_used:
                conn.executemany(
                    "INSERT INTO host_quota_use (host_code, year, used_fen) VALUES (?, ?, ?) "
                    "ON CONFLICT (host_code, year) DO UPDATE SET used_fen = excluded.used_fen",
                    [(host, year, used) for (host, year), used in batch.quota_used.items()],
                )
            if batch.rx_fills:
                self._insert("rx_fills (setl_id, prescribing_code, rx_id, pharmacy_code, filled_us)", 5,
                             batch.rx_fills)
            if batch.rx_releases:
                conn.executemany("UPDATE rx_fills SET reversal_setl_id = ? WHERE setl_id = ?", batch.rx_releases)
            if batch.nonces:
                self._insert("ecert_nonces (nonce, used_us, expires_us)", 3, batch.nonces)
            if batch.visits:
                self._insert("visit_log (setl_id, psn_no, visit_day, fixmedins_code, visit_type, diag_code, "
                             "rx_id, item_codes, line_facts, pharmacist_id)", 10, batch.visits)
            if batch.flags:
                self._insert("audit_flags (setl_id, rule, field, detail, fixmedins_code, flag_day, flagged_us)",
                             7, batch.flags)
            if batch.rx_issued:
                self._insert(
                    "prescriptions (prescribing_code, rx_id, setl_id, psn_no, prescriber_id, issued_day, "
                    "valid_to, items)", 8,
                    [(r.prescribing_code, r.rx_id, r.setl_id, r.psn_no, r.prescriber_id, r.issued_day, r.valid_to,
                      json.dumps([list(item) for item in r.items])) for r in batch.rx_issued],
                )
            if batch.rx_fill_items:
                self._insert("rx_fill_items (setl_id, prescribing_code, rx_id, hilist_code, cnt, pharmacist_id)",
                             6, batch.rx_fill_items)
            if batch.rx_item_releases:
                conn.executemany("UPDATE rx_fill_items SET reversal_setl_id = ? WHERE setl_id = ?",
                                 batch.rx_item_releases)
            if batch.rx_voids:
                conn.executemany("UPDATE prescriptions SET voided_setl_id = ? WHERE setl_id = ?", batch.rx_voids)

    def _insert(self, into: str, width: int, rows: list[Any]) -> None:
        """The rows INSERTed into `into` ("table (columns)"): many rows per
        statement (sqlite.insert_rows); a refused row rolls the batch back
        (sqlite.INSERT_ALL_OR_NOTHING)."""
        insert_rows(self._conn, f"{INSERT_ALL_OR_NOTHING} {into}", width, rows)


InternetStateStore = SqliteInternetState  # the name before the storage port
__all__ = ["InternetStateStore", "InternetWrite", "SqliteInternetState"]

"""Clearing results on /metrics: each province's latest cleared month, and
the prepaid-fund shortfall of every party in it, so an alert can page the
provincial agency when a fund fell short (docs/monitoring.md).

Clearing runs as a command (`medsettle clear`), not in the server, so this
is read from the ledger at scrape time: one indexed query for the latest
run of each province, and a statement is parsed again only when a newer
run appears."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from medsettle.ledger.storage.backends import connect_read_only
from medsettle.ledger.storage.pg_connect import DatabaseConnectError
from medsettle.ledger.storage.port import NotALedgerError, StorageError
from medsettle.server.logs import get_logger

log = get_logger("medsettle.server.metrics")

LATEST_RUNS = """
SELECT province, period, entry_no, cleared_us FROM clearing_runs AS run
WHERE period = (SELECT MAX(period) FROM clearing_runs WHERE province = run.province)
ORDER BY province
"""


@dataclass(frozen=True, slots=True)
class ClearedMonth:
    province: str
    period: str
    entry_no: int
    cleared_s: float
    shortfalls_fen: dict[str, int]  # party -> shortfall of its prepaid fund (0: covered)


class ClearingCollector(Collector):
    """Reads the ledger at db_path (a SQLite file or a postgresql:// URL;
    read only) at each scrape."""

    def __init__(self, db_path: str) -> None:
        self._db_path = db_path
        self._months: dict[str, ClearedMonth] = {}  # province -> its latest cleared month, parsed
        self._lock = threading.Lock()  # scrapes run on threads of their own

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        shortfall = GaugeMetricFamily(
            "medsettle_clearing_shortfall_fen", "Prepaid-fund shortfall of each party in its province's latest "
            "cleared month, in fen (0: the fund covered what the party owed): the party must pay it in money.",
            labels=["province", "period", "party"])
        cleared = GaugeMetricFamily(
            "medsettle_clearing_cleared_timestamp_seconds", "When each province's latest cleared month was cleared "
            "(Unix time).", labels=["province", "period"])
        for month in self._latest():
            cleared.add_metric([month.province, month.period], month.cleared_s)
            for party, fen in sorted(month.shortfalls_fen.items()):
                shortfall.add_metric([month.province, month.period, party], fen)
        yield shortfall
        yield cleared

    def _latest(self) -> list[ClearedMonth]:
        with self._lock:
            try:
                conn = connect_read_only(self._db_path)
                try:
                    self._months = {province: self._month(conn, province, period, entry_no, cleared_us)
                                    for province, period, entry_no, cleared_us in conn.execute(LATEST_RUNS)}
                finally:
                    conn.close()
            # The scrape goes on with what was read last (the ledger unreachable now, or gone).
            except (sqlite3.Error, OSError, StorageError, NotALedgerError, DatabaseConnectError) as error:
                log.warning("clearing metrics not read", error=f"{type(error).__name__}: {error}")
            return list(self._months.values())

    def _month(self, conn: Any, province: str, period: str, entry_no: int,
               cleared_us: int) -> ClearedMonth:
        known = self._months.get(province)
        if known is not None and known.entry_no == entry_no:
            return known
        (statement_json,) = conn.execute("SELECT statement_json FROM clearing_runs WHERE province = ? AND period = ?",
                                         (province, period)).fetchone()
        positions = json.loads(statement_json)["positions"]
        return ClearedMonth(province, period, entry_no, cleared_us / 1e6,
                            {p["party"]: p["shortfall_fen"] for p in positions})

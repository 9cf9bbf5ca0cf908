"""The daily supervision export finds a day's settlements through the time
index (schema step settlements_by_time), never by reading every settlement
of the ledger: each of its statements' plans on SQLite is checked."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.supervision import export


class PlanRecordingConnection(sqlite3.Connection):
    """Records the query plan of every statement it runs."""

    plans: list[tuple[str, list[str]]]

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "PRAGMA")):
            steps = [row[-1] for row in super().execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
            self.plans.append((sql, steps))
        return super().execute(sql, parameters)


def test_every_statement_on_settlements_searches_the_day_by_time(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    SqliteLedgerStore(db).close()
    conn = sqlite3.connect(db, factory=PlanRecordingConnection)
    conn.plans = []
    day = dt.date(2026, 10, 15)
    list(export._settlement_records(conn, day))
    export._regions_of_day(conn, day)
    export._records_of_day(conn, day)
    conn.close()
    on_settlements = [(sql, steps) for sql, steps in conn.plans if "FROM settlements" in sql or "JOIN settlements" in sql]
    assert len(on_settlements) == 5  # the day's records, its two kinds of fills, its regions and its count
    for sql, steps in on_settlements:
        settlement_steps = [step for step in steps if step.startswith(("SCAN s", "SEARCH s ", "SCAN settlements",
                                                                      "SEARCH settlements"))]
        assert settlement_steps, (sql, steps)
        assert all("settlements_by_time (setl_time_us>? AND setl_time_us<?)" in step
                   for step in settlement_steps), (sql, steps)

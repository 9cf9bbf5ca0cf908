"""A batch that begins before midnight China time and settles a bill after
it: the bill meets the audit rules with the person's visits of its own day,
as a batch begun after midnight would, not with those of the day before."""

from __future__ import annotations

import datetime as dt

from medsettle.client.loadgen import REGIONS
from medsettle.ledger.clock import CHINA_TZ, FixedClock

from tests.unit.test_day_visits_bound import answer, as_command, open_ledger

BEFORE_MIDNIGHT = dt.datetime(2026, 10, 15, 23, 59, 59, 900_000, tzinfo=CHINA_TZ)
AFTER_MIDNIGHT = dt.datetime(2026, 10, 16, 0, 0, 0, 100_000, tzinfo=CHINA_TZ)
LINES = [("S0001", 2500), ("S0002", 12000)]  # services: the sample's duplicate-item rule checks them
FLAGS = "SELECT rule, field, detail FROM audit_flags ORDER BY flag_no"


def _folder(tmp_path, name: str):  # type: ignore[no-untyped-def]
    folder = tmp_path / name
    folder.mkdir()
    return folder


class MidnightDuringBatch(FixedClock):
    """Reads BEFORE_MIDNIGHT once (the batch's start), AFTER_MIDNIGHT from then on."""

    def now(self) -> dt.datetime:
        at = self._at
        self._at = AFTER_MIDNIGHT
        return at


def test_a_bill_settled_after_midnight_in_a_batch_begun_before_it_meets_its_own_day(tmp_path) -> None:
    straddling_store, straddling = open_ledger(_folder(tmp_path, "a"), None)
    after_store, after = open_ledger(_folder(tmp_path, "b"), None)
    try:
        for processor in (straddling, after):  # the person's visits of the 15th
            processor._clock.set(BEFORE_MIDNIGHT - dt.timedelta(minutes=5))
            for number in (1, 2):
                (outcome,) = processor.run_batch([as_command(number, REGIONS[0], 0, LINES, 1)])
                assert answer(outcome) is not None
        straddling._clock = MidnightDuringBatch(BEFORE_MIDNIGHT)
        after._clock.set(AFTER_MIDNIGHT)
        (expected,) = after.run_batch([as_command(3, REGIONS[0], 0, LINES, 1)])
        assert answer(expected) == ()  # the person's first visit of the 16th: nothing to flag
        (outcome,) = straddling.run_batch([as_command(3, REGIONS[0], 0, LINES, 1)])
        assert answer(outcome) == answer(expected)
        assert (straddling_store.reader().execute(FLAGS).fetchall()
                == after_store.reader().execute(FLAGS).fetchall())
    finally:
        straddling_store.close()
        after_store.close()

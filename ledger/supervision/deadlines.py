"""When a day's supervision export is due, per treatment place. Pure.

A region's rule `export_deadline` (HH:MM, China time; Fujian and Jilin:
06:00) makes the day's business data due the next day by that time; a
region without it sets no deadline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.reference.internet import InternetReference


@dataclass(frozen=True, slots=True)
class Deadline:
    admdvs: str  # the treatment place whose institutions' records are due
    due: dt.datetime  # China time

    def late_at(self, now: dt.datetime) -> bool:
        return now > self.due


def deadlines(internet: InternetReference, regions: Iterable[str], day: dt.date) -> list[Deadline]:
    """The deadlines of the day's export for the regions with records that day, by region."""
    out = []
    for admdvs in sorted(set(regions)):
        deadline = internet.policy(admdvs).export_deadline
        if deadline:
            hour, minute = (int(part) for part in deadline.split(":"))
            next_day = day + dt.timedelta(days=1)
            out.append(Deadline(admdvs, dt.datetime(next_day.year, next_day.month, next_day.day, hour, minute,
                                                    tzinfo=CHINA_TZ)))
    return out

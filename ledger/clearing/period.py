"""Period rules of the clearing run: a period is a calendar month in China
time; it can be cleared only once it has ended, and only once (the run
records itself in clearing_runs in the same transaction as its entry).
A reversal belongs to the period in which it happens (the settlement
processor stamps it so), so a late reversal is picked up by the next run."""

from __future__ import annotations

import datetime as dt
import re

from medsettle.ledger.clock import CHINA_TZ, parse_period, period_bounds, period_has_ended

PROVINCE_PATTERN = re.compile(r"^[0-9]{2}\Z")


class ClearingRefused(Exception):
    """The run cannot start; the message names the option at fault."""


def check_province(province: str) -> str:
    if not PROVINCE_PATTERN.match(province):
        raise ClearingRefused(f"--province must be the 2-digit province code, got {province!r}")
    return province


def check_period_ended(period: str, now: dt.datetime) -> str:
    """The period, if it is a well-formed month that has ended (China time)."""
    try:
        parse_period(period)
    except ValueError:
        raise ClearingRefused(f"--period must be YYYY-MM, got {period!r}") from None
    if not period_has_ended(period, now):
        end = period_bounds(period)[1]
        raise ClearingRefused(
            f"--period {period} has not ended: it closes at {end.isoformat()} China time "
            f"(now {now.astimezone(CHINA_TZ).isoformat(timespec='seconds')}); clear it after that"
        )
    return period


def clearing_entry_id(province: str, period: str) -> str:
    """The setl_id column of the clearing journal entry (one per province and period)."""
    return f"CLR-{province}-{period}"

"""One injected clock; periods are calendar months in China time."""

from __future__ import annotations

import datetime as dt
import re
from typing import Protocol
from zoneinfo import ZoneInfo

CHINA_TZ = ZoneInfo("Asia/Shanghai")
PERIOD_PATTERN = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])\Z")  # \Z: "$" would allow a trailing newline


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


class FixedClock:
    """A clock that stands still until moved; for tests and the demo."""

    def __init__(self, at: dt.datetime) -> None:
        assert at.tzinfo is not None, "clock times are timezone-aware"
        self._at = at

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        assert at.tzinfo is not None
        self._at = at

    def advance(self, delta: dt.timedelta) -> None:
        self._at = self._at + delta


def parse_clock(spec: str | None) -> Clock:
    """'' or None: the system clock; an ISO time: a clock fixed at that time."""
    if not spec:
        return SystemClock()
    at = dt.datetime.fromisoformat(spec)
    if at.tzinfo is None:
        at = at.replace(tzinfo=CHINA_TZ)
    return FixedClock(at)


_last_conversion: tuple[dt.datetime, dt.datetime] | None = None


def china_time(at: dt.datetime) -> dt.datetime:
    """at.astimezone(CHINA_TZ). The last conversion is kept: the writer asks
    three times per settlement (year, period, day) about the same instant.
    Keyed by identity, as datetimes are immutable; one tuple, swapped whole."""
    global _last_conversion
    last = _last_conversion
    if last is not None and last[0] is at:
        return last[1]
    local = at.astimezone(CHINA_TZ)
    _last_conversion = (at, local)
    return local


def period_of(at: dt.datetime) -> str:
    """The clearing period (YYYY-MM) of an instant, in China time."""
    local = china_time(at)
    return f"{local.year:04d}-{local.month:02d}"


def year_of(at: dt.datetime) -> int:
    return china_time(at).year


def parse_period(period: str) -> tuple[int, int]:
    match = PERIOD_PATTERN.match(period)
    if not match:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return int(match.group(1)), int(match.group(2))


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a period as aware datetimes in China time."""
    year, month = parse_period(period)
    start = dt.datetime(year, month, 1, tzinfo=CHINA_TZ)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CHINA_TZ)
    return start, end


def period_has_ended(period: str, now: dt.datetime) -> bool:
    return now >= period_bounds(period)[1]

"""Periods are calendar months in China time (Asia/Shanghai, UTC+8, no DST)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import (
    CHINA_TZ,
    FixedClock,
    SystemClock,
    parse_clock,
    parse_period,
    period_bounds,
    period_has_ended,
    period_of,
    year_of,
)

UTC = dt.timezone.utc
PLUS_8 = dt.timezone(dt.timedelta(hours=8))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "period"),
    [
        (utc(2026, 10, 31, 16, 30), "2026-11"),  # 00:30 on 1 November in China
        (utc(2026, 10, 31, 16, 0), "2026-11"),  # exactly midnight in China
        (utc(2026, 10, 31, 15, 59, 59), "2026-10"),  # 23:59:59 on 31 October in China
        (utc(2026, 10, 15, 2, 30), "2026-10"),
        (utc(2026, 12, 31, 16, 0), "2027-01"),  # new year comes 8 hours early
        (utc(2026, 12, 31, 15, 59, 59), "2026-12"),
        (utc(2028, 2, 29, 16, 0), "2028-03"),  # leap day
        (dt.datetime(2026, 11, 1, 0, 0, tzinfo=CHINA_TZ), "2026-11"),
        (dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2026-11"),  # 13:30 in China
        (dt.datetime(2026, 10, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2026-11"),  # 12:00, 1 Nov
    ],
)
def test_period_of_is_the_month_in_china(instant: dt.datetime, period: str) -> None:
    assert period_of(instant) == period


def test_period_bounds_are_china_midnights() -> None:
    start, end = period_bounds("2026-10")
    assert start == dt.datetime(2026, 10, 1, tzinfo=PLUS_8) == utc(2026, 9, 30, 16)
    assert end == dt.datetime(2026, 11, 1, tzinfo=PLUS_8) == utc(2026, 10, 31, 16)
    assert start.utcoffset() == end.utcoffset() == dt.timedelta(hours=8)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("2026-01", dt.date(2026, 1, 1), dt.date(2026, 2, 1)),
        ("2026-02", dt.date(2026, 2, 1), dt.date(2026, 3, 1)),
        ("2026-11", dt.date(2026, 11, 1), dt.date(2026, 12, 1)),
        ("2026-12", dt.date(2026, 12, 1), dt.date(2027, 1, 1)),  # December ends in the next year
        ("2028-02", dt.date(2028, 2, 1), dt.date(2028, 3, 1)),
    ],
)
def test_period_bounds_cover_the_calendar_month(period: str, start: dt.date, end: dt.date) -> None:
    lo, hi = period_bounds(period)
    assert (lo.date(), hi.date()) == (start, end)
    assert lo.time() == hi.time() == dt.time(0, 0)
    assert period_of(lo) == period
    assert period_of(hi - dt.timedelta(microseconds=1)) == period
    assert period_of(hi) != period


def test_period_has_ended_at_china_midnight() -> None:
    assert not period_has_ended("2026-10", utc(2026, 10, 31, 15, 59, 59))
    assert period_has_ended("2026-10", utc(2026, 10, 31, 16, 0))  # 00:00 on 1 November in China
    assert period_has_ended("2026-10", utc(2026, 10, 31, 16, 30))
    assert not period_has_ended("2026-10", utc(2026, 10, 1, 0, 0))
    assert not period_has_ended("2026-11", utc(2026, 10, 31, 16, 30))  # the month has just begun
    assert period_has_ended("2025-12", utc(2026, 1, 1, 0, 0))
    # a period in the future has not ended
    assert not period_has_ended("2027-01", utc(2026, 12, 31, 16, 0))


@pytest.mark.parametrize(
    "text",
    [
        "2026-13", "2026-00", "2026-1", "202610", "26-10", "2026-10-01", "", "2026/10",
        "2026-10\n",
        "２０２６-10",  # full-width digits
    ],
)
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_period(text)
    with pytest.raises(ValueError):
        period_bounds(text)


def test_parse_period() -> None:
    assert parse_period("2026-10") == (2026, 10)
    assert parse_period("2027-01") == (2027, 1)


instants = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(instants)
def test_every_instant_lies_in_its_period(at: dt.datetime) -> None:
    period = period_of(at)
    start, end = period_bounds(period)
    assert start <= at < end
    assert not period_has_ended(period, at)
    assert period_has_ended(period, end)
    # the period is the calendar month of the wall clock in China (UTC+8, no DST since 1991)
    local = at + dt.timedelta(hours=8)
    assert period == f"{local.year:04d}-{local.month:02d}"
    assert year_of(at) == local.year
    # consecutive periods tile time: the next period starts where this one ends
    assert period_bounds(period_of(end))[0] == end


def test_fixed_clock_stands_still_until_moved() -> None:
    clock = FixedClock(utc(2026, 10, 15, 2, 30))
    assert clock.now() == clock.now() == utc(2026, 10, 15, 2, 30)
    clock.advance(dt.timedelta(days=17))
    assert period_of(clock.now()) == "2026-11"
    clock.set(utc(2026, 1, 1))
    assert clock.now() == utc(2026, 1, 1)
    with pytest.raises(AssertionError):
        FixedClock(dt.datetime(2026, 10, 15))  # naive times are refused


def test_parse_clock() -> None:
    assert isinstance(parse_clock(None), SystemClock)
    assert isinstance(parse_clock(""), SystemClock)
    assert parse_clock(None).now().tzinfo is not None
    # a naive time is read as China time
    clock = parse_clock("2026-11-01T00:30")
    assert clock.now() == utc(2026, 10, 31, 16, 30)
    assert period_of(clock.now()) == "2026-11"
    assert parse_clock("2026-10-31T16:30:00+00:00").now() == utc(2026, 10, 31, 16, 30)

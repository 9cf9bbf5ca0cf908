"""Period rules of the clearing run and the declared-totals file (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsettle.ledger.clearing.period import ClearingRefused, check_period_ended, check_province
from medsettle.ledger.clearing.reconcile import DECLARED_COLUMNS, read_declared
from medsettle.ledger.clearing.store import months_between
from medsettle.ledger.clock import CHINA_TZ

UTC = dt.timezone.utc


def test_a_period_ends_at_midnight_china_time_not_utc():
    # 2026-10-31 16:00 UTC is 2026-11-01 00:00 in China: October has just ended
    assert check_period_ended("2026-10", dt.datetime(2026, 10, 31, 16, 0, tzinfo=UTC)) == "2026-10"
    with pytest.raises(ClearingRefused, match="has not ended"):
        check_period_ended("2026-10", dt.datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC))


@given(st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2098, 12, 1), timezones=st.just(CHINA_TZ)))
def test_the_current_month_is_never_clearable_and_the_previous_one_always_is(now):
    current = f"{now.year:04d}-{now.month:02d}"
    previous = f"{now.year - (now.month == 1):04d}-{(now.month - 2) % 12 + 1:02d}"
    with pytest.raises(ClearingRefused):
        check_period_ended(current, now)
    assert check_period_ended(previous, now) == previous


@pytest.mark.parametrize("period", ["2026-1", "2026-13", "2026-10\n", "26-10", ""])
def test_malformed_periods_are_refused_by_option_name(period):
    with pytest.raises(ClearingRefused, match="--period must be YYYY-MM"):
        check_period_ended(period, dt.datetime(2030, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("province", ["4", "440", "4a", "44\n"])
def test_malformed_provinces_are_refused(province):
    with pytest.raises(ClearingRefused, match="--province"):
        check_province(province)


def test_months_between_crosses_a_year():
    assert list(months_between("2026-11", "2027-02")) == ["2026-11", "2026-12", "2027-01", "2027-02"]


HEADER = ",".join(DECLARED_COLUMNS) + "\n"


def test_declared_totals_are_read(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + "H44010100001,11,3,10700,0,10700,0\nH44010100001,21,-1,-500,-400,0,-100\n")
    rows = read_declared(path)
    assert [(r.fixmedins_code, r.clr_type, r.totals.setl_cnt, r.totals.psn_cash_pay_fen) for r in rows] == [
        ("H44010100001", 11, 3, 0), ("H44010100001", 21, -1, -100)]


@pytest.mark.parametrize("body, message", [
    ("fixmedins_code,clr_type\nH44010100001,11\n", "the header must be"),
    (HEADER + "X1,11,1,1,1,0,0\n", "line 2: fixmedins_code"),
    (HEADER + "H44010100001,12,1,1,1,0,0\n", "line 2: clr_type must be one of"),
    (HEADER + "H44010100001,11,1,1.5,1,0,0\n", "line 2: medfee_sumamt_fen"),
    (HEADER + "H44010100001,11,1,1,1,0,0\nH44010100001,11,1,1,1,0,0\n", "line 3: H44010100001 clr_type 11 is declared twice"),
    (HEADER + "H44010100001,11,1,99999999999999999,1,0,0\n", "line 2: medfee_sumamt_fen"),
])
def test_a_bad_declared_file_is_refused_whole_naming_line_and_column(tmp_path, body, message):
    path = tmp_path / "d.csv"
    path.write_text(body)
    with pytest.raises(ClearingRefused, match=message):
        read_declared(path)

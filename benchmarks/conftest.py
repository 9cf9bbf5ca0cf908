"""Shared inputs of the micro-benchmarks: the shipped reference data, bills
shaped like the load generator's, a real SQLite file per benchmark."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType

SETTLE_AT = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)
# Bills of the sample's persons: (institution, person, insutype, insurance place); local and cross-region.
PATIENTS = (
    ("H44010100001", "44010000000000000001", 310, "440100"),
    ("H44030100001", "44010000000000000001", 310, "440100"),
    ("H44010100001", "44010000000000000002", 390, "440100"),
)
LINES = (FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 1, 3500), FeeLine("3", "XC0401", 1, 1200))
_msgids = itertools.count(1)


def make_bill(i: int) -> Bill:
    code, psn_no, insutype, insuplc = PATIENTS[i % len(PATIENTS)]
    return Bill(msgid=f"B{next(_msgids):012d}", fixmedins_code=code, psn_no=psn_no, insutype=insutype,
                insuplc_admdvs=insuplc, visit_type=VisitType.OUTPATIENT, fee_lines=LINES, acct_used_flag=True)


@pytest.fixture(scope="session")
def reference():
    return parse_document(sample_document())[0]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(SETTLE_AT)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bench.db"

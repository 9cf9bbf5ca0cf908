"""Where several servers write one ledger, a batch reads (and so locks) every
host quota it may add to when it starts, in sorted order: two servers'
batches then never take two quotas in opposite orders (a deadlock)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.settlement.internet_stage import InternetStage
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand

NOW = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)
# Hospitals of the sample data whose host quota for 2026 is set, in an order that is not sorted.
QUOTA_HOSTS = ("H64010100001", "H31010100001", "H44010100001")


class RecordingState:
    """An InternetState that records which quotas were read, in order."""

    def __init__(self) -> None:
        self.quota_reads: list[tuple[str, int]] = []

    def quota_used(self, host_code: str, year: int) -> int:
        self.quota_reads.append((host_code, year))
        return 0

    def day_visits(self, psn_nos: list[str], day: str) -> dict[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"begin() should not call {name}")


def settle(code: str, msgid: str) -> SettleCommand:
    return SettleCommand(Bill(msgid=msgid, fixmedins_code=code, psn_no="44010000000000000001", insutype=310,
                              insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
                              fee_lines=(FeeLine("1", "S0001", 1, 2500),)), True)


@pytest.fixture(scope="module")
def reference():
    return parse_document(sample_document())[0]


def test_a_shared_ledgers_batch_claims_its_quotas_first_in_sorted_order(reference) -> None:
    assert all((host, 2026) in reference.internet.quotas for host in QUOTA_HOSTS)
    state = RecordingState()
    stage = InternetStage(state, reference, sole_writer=False)  # type: ignore[arg-type]
    commands = [settle(code, f"M{i}") for i, code in enumerate(QUOTA_HOSTS)]
    commands.append(ReverseCommand("R1", QUOTA_HOSTS[0], "S000000000001"))  # the same quota: claimed once
    commands.append(settle("P44010100001", "M9"))  # a pharmacy counts against no quota
    stage.begin(commands, NOW)
    assert state.quota_reads == sorted((host, 2026) for host in QUOTA_HOSTS)


def test_a_sole_writer_reads_a_quota_only_when_a_settlement_needs_it(reference) -> None:
    state = RecordingState()
    stage = InternetStage(state, reference, sole_writer=True)  # type: ignore[arg-type]
    stage.begin([settle(code, f"M{i}") for i, code in enumerate(QUOTA_HOSTS)], NOW)
    assert state.quota_reads == []

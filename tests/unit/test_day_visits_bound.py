"""The persons' days the writer keeps for the audit rules stay within their
bounds (persons kept, item codes a kept day holds, shared records), and
past them the rules decide exactly as with every day kept: a day not kept
is read again from the visit log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.client.loadgen import HOSPITALS, REGIONS, synthetic_psn_no, synthetic_reference
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Refused
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.settlement.internet_stage import InternetStage
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.supervision.day_visits import NO_ACTIVITY, DayVisits

START = dt.datetime(2026, 10, 15, 23, 0, tzinfo=CHINA_TZ)
PERSONS_PER_REGION = 3
# (code, unit price): services, which the sample's duplicate-item rule checks, and drugs
LINES = (("S0001", 2500), ("S0002", 12000), ("S0003", 5200), ("S0005", 1000), ("XA0101", 1800), ("XB0201", 3500))
HOSPITAL_OF = {region: next(code for code, r in HOSPITALS.items() if r == region) for region in REGIONS}
BOUNDS = dict(max_persons=3, max_items=2, max_shared=2)

bills = st.tuples(
    st.sampled_from(REGIONS), st.integers(0, PERSONS_PER_REGION - 1),
    st.lists(st.sampled_from(LINES), min_size=1, max_size=3), st.integers(1, 3),
)
# batches of bills; a batch may start an hour later (the third crosses midnight, China time)
batches = st.lists(st.tuples(st.booleans(), st.lists(bills, min_size=1, max_size=6)), min_size=1, max_size=12)


def open_ledger(folder: Path, days: DayVisits | None) -> tuple[SqliteLedgerStore, SettlementProcessor]:
    doc = synthetic_reference(sample_document(), PERSONS_PER_REGION * len(REGIONS))
    data, persons = parse_document(doc)
    store = SqliteLedgerStore(folder / "ledger.db")
    clock = FixedClock(START)
    store.save_reference(json.dumps(doc, ensure_ascii=False), persons, clock.now())
    processor = SettlementProcessor(store, data, clock)
    if days is not None:
        processor._internet = InternetStage(store.internet_state(), data, days=days)
    return store, processor


def as_command(number: int, region: str, person: int, lines: list[tuple[str, int]], cnt: int) -> SettleCommand:
    hospital = HOSPITAL_OF[region]
    fee_lines = tuple(FeeLine(str(i + 1), code, cnt, price) for i, (code, price) in enumerate(lines))
    return SettleCommand(Bill(msgid=f"M{number}", fixmedins_code=hospital, psn_no=synthetic_psn_no(region, person),
                              insutype=310 if person % 2 == 0 else 390, insuplc_admdvs=region,
                              visit_type=VisitType.OUTPATIENT, fee_lines=fee_lines), True)


def answer(outcome: object) -> object:
    if isinstance(outcome, Refused):
        return ("refused", outcome.reason, str(outcome))
    return outcome.audit_flags  # type: ignore[attr-defined]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches)
def test_past_every_bound_the_rules_decide_as_with_every_day_kept(tmp_path_factory, plan) -> None:
    days = DayVisits(**BOUNDS)
    bounded_store, bounded = open_ledger(tmp_path_factory.mktemp("bounded"), days)
    whole_store, whole = open_ledger(tmp_path_factory.mktemp("whole"), None)
    every_psn_no = [synthetic_psn_no(region, i) for region in REGIONS for i in range(PERSONS_PER_REGION)]
    number = 0
    try:
        for later, batch in plan:
            for processor in (bounded, whole):
                if later:
                    processor._clock.advance(dt.timedelta(hours=1))
            commands = []
            for bill in batch:
                number += 1
                commands.append(as_command(number, *bill))
            assert [answer(o) for o in bounded.run_batch(commands)] == [answer(o) for o in whole.run_batch(commands)]
            assert len(days) <= BOUNDS["max_persons"]
            kept = [days.get(psn_no) for psn_no in every_psn_no]
            assert all(len(day.items) <= BOUNDS["max_items"] for day in kept if day is not None)
        flags = "SELECT setl_id, rule, field, detail FROM audit_flags ORDER BY flag_no"
        assert (bounded_store.reader().execute(flags).fetchall() == whole_store.reader().execute(flags).fetchall())
    finally:
        bounded_store.close()
        whole_store.close()


def test_the_kept_days_drop_the_first_kept_past_max_persons_and_a_day_past_max_items() -> None:
    days = DayVisits(max_persons=2, max_items=2, max_shared=8)
    days.start("2026-10-15")
    one = days.after_visit(NO_ACTIVITY, "S0001", ["S0001"])
    days.keep({"P1": one, "P2": one})
    days.keep({"P3": one, "P1": days.after_visit(one, "S0001", ["S0001"])})
    assert (days.get("P1").visits, days.get("P2"), days.get("P3")) == (2, None, one)  # P2 settled least recently
    three = days.after_visit(one, "S0002,S0003", ["S0002", "S0003"])
    assert sorted(three.items) == ["S0001", "S0002", "S0003"]
    days.keep({"P3": three})
    assert days.get("P3") is None and len(days) == 1  # read from the visit log from now on
    assert days.missing(["P3", "P1", "P0"]) == ["P0", "P3"]
    days.start("2026-10-16")
    assert len(days) == 0


def test_persons_with_the_same_day_share_one_record_up_to_max_shared() -> None:
    days = DayVisits(max_persons=100, max_items=4, max_shared=3)
    days.start("2026-10-15")
    first = days.after_visit(NO_ACTIVITY, "S0001,XA0101", ["S0001", "XA0101"])
    assert days.after_visit(NO_ACTIVITY, "S0001,XA0101", ["S0001", "XA0101"]) is first
    assert days.record(1, {"XA0101", "S0001"}) is first  # as read from the visit log
    built = [days.record(visits, {"S0001"}) for visits in range(1, 10) for _ in range(2)]
    # visits 1 and 2 fill the three shared with the first; past max_shared each is built for its person
    assert len({id(record) for record in built}) == 2 + 7 * 2
    assert all(record.visits == visits and record.items == {"S0001"}
               for record, visits in zip(built, [v for v in range(1, 10) for _ in range(2)]))
    assert days.record(0, {"S0001"}) is NO_ACTIVITY

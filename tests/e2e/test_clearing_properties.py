"""Property test of the whole clearing run on real SQLite files: any month of
traffic (local, in-province, cross-province, reversals in the month and after
it was cleared, prepaid funds) written by the real writer-side processor
clears; the net positions sum to zero; after clearing, every reciprocal
balance of the province's agencies is zero for the period; the statement's
totals are the settlements' totals; and the next month clears the late
reversals the same way."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.ledger.clearing.run import Outcome, prepay, run_clearing
from medsettle.ledger.clearing.store import ClearingStore
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Refused
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand, SettlementProcessor
from tests.e2e.test_clearing_cli import VISITS

OCTOBER = dt.datetime(2026, 10, 10, 9, 0, tzinfo=CHINA_TZ)
NOVEMBER = dt.datetime(2026, 11, 10, 9, 0, tzinfo=CHINA_TZ)

visits = st.lists(st.tuples(st.integers(0, len(VISITS) - 1), st.integers(100, 900_000), st.booleans()),
                  min_size=1, max_size=25)
reversals = st.lists(st.tuples(st.integers(0, 24), st.sampled_from(["october", "november"])), max_size=8)
prepaid = st.dictionaries(st.sampled_from(["440100", "440300", "440600"]), st.integers(1, 2_000_000), max_size=3)


def settle_all(processor: SettlementProcessor, picks, start: int) -> list[Settlement]:
    commands = []
    for n, (visit, price_fen, acct) in enumerate(picks):
        code, psn_no, insuplc, insutype = VISITS[visit]
        commands.append(SettleCommand(Bill(
            msgid=f"P{start + n:012d}", fixmedins_code=code, psn_no=psn_no, insutype=insutype,
            insuplc_admdvs=insuplc, visit_type=VisitType.OUTPATIENT, acct_used_flag=acct,
            fee_lines=(FeeLine("1", "XB0201", 1, price_fen), FeeLine("2", "S0001", 1, 2500)),
        ), persist=True))
    outcomes = processor.run_batch(commands)
    assert not [o for o in outcomes if isinstance(o, Refused)], outcomes
    return outcomes


def reverse_some(processor: SettlementProcessor, settled: list[Settlement], picks, tag: str) -> list[Settlement]:
    chosen = {settled[i % len(settled)].setl_id: settled[i % len(settled)] for i, when in picks if when == tag}
    commands = [ReverseCommand(f"R{tag[:3]}{n:06d}", s.fixmedins_code, s.setl_id) for n, s in enumerate(chosen.values())]
    outcomes = processor.run_batch(commands)
    return [o for o in outcomes if not isinstance(o, Refused)]  # an already reversed one is refused: fine


def check_cleared(store: ClearingStore, statement_json: str, period: str, settled: list[Settlement]) -> None:
    statement = json.loads(statement_json)
    assert sum(p["net_fen"] for p in statement["positions"]) == 0
    expected: dict[str, int] = defaultdict(int)
    here = [s for s in settled if s.setlym == period and s.mdtrtarea_admvs.startswith("44")]
    for s in settled:
        crosses = s.insuplc_admdvs != s.mdtrtarea_admvs
        if s.setlym == period and crosses and "44" in (s.insuplc_admdvs[:2], s.mdtrtarea_admvs[:2]):
            owed = s.split.hifp_pay_fen + s.split.acct_pay_fen
            for admdvs, sign in ((s.mdtrtarea_admvs, 1), (s.insuplc_admdvs, -1)):
                expected[admdvs if admdvs[:2] == "44" else f"province:{admdvs[:2]}"] += sign * owed
    assert {p["party"]: p["net_fen"] for p in statement["positions"] if p["net_fen"]} == \
        {party: net for party, net in expected.items() if net}
    assert statement["totals"]["setl_cnt"] == len(here)
    assert statement["totals"]["payable_fen"] == sum(s.split.hifp_pay_fen + s.split.acct_pay_fen for s in here)
    for position in statement["positions"]:
        assert position["prepaid_drawn_fen"] <= position["prepaid_available_fen"]
    balances = store.book_balances(period)
    for (book, account), amount in balances.items():
        if book.startswith("44") and account.startswith(("receivable:agency:", "payable:agency:")):
            assert amount == 0, (book, account, amount)
    books: dict[str, int] = defaultdict(int)
    for (book, _), amount in balances.items():
        books[book] += amount
    assert not any(books.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visits, visits, reversals, prepaid)
def test_any_month_clears_to_zero_reciprocal_balances_and_the_next_month_too(october_picks, november_picks,
                                                                            reversal_picks, prepaid_fen):
    with tempfile.TemporaryDirectory() as scratch:
        clock = FixedClock(OCTOBER)
        store = ClearingStore(Path(scratch) / "ledger.db")
        try:
            processor = SettlementProcessor(store, open_reference(store, clock), clock)
            october = settle_all(processor, october_picks, 0)
            october += reverse_some(processor, october, reversal_picks, "october")
            for agency, amount_fen in prepaid_fen.items():
                prepay(store, "44", agency, amount_fen, clock)
            clock.set(NOVEMBER)
            november = settle_all(processor, november_picks, 1000)
            cleared = run_clearing(store, "44", "2026-10", FixedClock(NOVEMBER))
            assert cleared.outcome is Outcome.CLEARED, cleared.breaks
            check_cleared(store, cleared.statement_json, "2026-10", october)
            november += reverse_some(processor, october, reversal_picks, "november")  # after October was cleared
            again = run_clearing(store, "44", "2026-10", FixedClock(NOVEMBER))
            assert again.outcome is Outcome.ALREADY_CLEARED and again.statement_json == cleared.statement_json
            next_month = run_clearing(store, "44", "2026-11", FixedClock(dt.datetime(2026, 12, 1, tzinfo=CHINA_TZ)))
            assert next_month.outcome is Outcome.CLEARED, next_month.breaks
            check_cleared(store, next_month.statement_json, "2026-11", october + november)
        finally:
            store.close()

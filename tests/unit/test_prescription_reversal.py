"""A visit whose e-prescription was dispensed is reversed only once no fill
of it stands; then its reversal voids the prescription. Checked on the
settlement writer (SettlementProcessor on a SQLite ledger) with fills, sale
reversals and visit reversals in any order, several to a batch, so the
batch's own fills and reversals count as the stored ones do."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Refused
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription, Settlement, VisitType
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

NOW = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)
PSN = "44010000000000000001"
INTERNET = "H44010100901"
PHARMACY = "P44030100001"
_msgids = itertools.count()


def _msgid() -> str:
    return f"RV{next(_msgids):010d}"


def issuing(rx_id: str, cnt: int) -> SettleCommand:
    return SettleCommand(Bill(_msgid(), INTERNET, PSN, 310, "440100", VisitType.INTERNET_FOLLOWUP,
                              (FeeLine("1", "S0011", 1, 2500),), diag_code="E11.9",
                              prior_offline_diag_date="2026-09-20",
                              prescription=Prescription(rx_id, "DR0001", (("XA0102", cnt),))), True)


def sale(rx_id: str, cnt: int) -> SettleCommand:
    return SettleCommand(Bill(_msgid(), PHARMACY, PSN, 310, "440100", VisitType.PHARMACY,
                              (FeeLine("1", "XA0102", cnt, 1500),), rx_id=rx_id,
                              prescribing_fixmedins_code=INTERNET, pharmacist_id="PH0001"), True)


def rule_of(outcome: object) -> str:
    assert isinstance(outcome, Refused), outcome
    return outcome.metadata.get("rule", "") if outcome.metadata else ""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 5), st.lists(st.lists(st.tuples(st.sampled_from(["fill", "reverse_fill", "reverse_visit"]),
                                                      st.integers(1, 3)), min_size=1, max_size=4),
                                   min_size=1, max_size=5))
def test_a_visit_is_reversed_only_when_no_fill_of_its_prescription_stands(tmp_path: Path, prescribed, batches):
    store = SqliteLedgerStore(tmp_path / f"rx{next(_msgids)}.db")
    clock = FixedClock(NOW)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    try:
        [visit] = processor.run_batch([issuing("RX-1", prescribed)])
        assert isinstance(visit, Settlement)
        live: list[tuple[str, int]] = []  # committed fills that stand: (setl_id, cnt)
        visit_reversed = False
        for ops in batches:
            commands, expected = [], []
            staged = list(live)  # what stands as the batch's commands run
            for op, cnt in ops:
                if op == "fill":
                    commands.append(sale("RX-1", cnt))
                    left = prescribed - sum(c for _, c in staged)
                    ok = not visit_reversed and cnt <= left
                    expected.append("ok" if ok else "RX_VOID" if visit_reversed else
                                    "RX_ALREADY_FILLED" if left == 0 else "RX_QUANTITY_EXCEEDED")
                    if ok:
                        staged.append(("?", cnt))  # its id is known after the batch
                elif op == "reverse_fill" and any(s != "?" for s, _ in staged):
                    setl_id, cnt_taken = next(f for f in staged if f[0] != "?")
                    commands.append(ReverseCommand(_msgid(), PHARMACY, setl_id))
                    staged.remove((setl_id, cnt_taken))
                    expected.append("ok")
                elif op == "reverse_visit":
                    commands.append(ReverseCommand(_msgid(), INTERNET, visit.setl_id))
                    ok = not visit_reversed and not staged
                    expected.append("ok" if ok else "ALREADY_REVERSED" if visit_reversed else "RX_DISPENSED")
                    visit_reversed = visit_reversed or ok
            outcomes = processor.run_batch(commands)
            got = ["ok" if isinstance(o, Settlement) else (rule_of(o) or o.reason.value) for o in outcomes]
            assert got == expected
            for command, outcome in zip(commands, outcomes):
                if isinstance(command, SettleCommand) and isinstance(outcome, Settlement):
                    live.append((outcome.setl_id, command.bill.fee_lines[0].cnt))
                elif isinstance(command, ReverseCommand) and command.fixmedins_code == PHARMACY:
                    live = [f for f in live if f[0] != command.setl_id]
        conn = store.reader()
        voided = conn.execute("SELECT voided_setl_id FROM prescriptions").fetchone()[0]
        standing = conn.execute("SELECT COALESCE(SUM(cnt), 0) FROM rx_fill_items WHERE reversal_setl_id IS NULL").fetchone()[0]
        assert (voided is not None) == visit_reversed
        assert standing == sum(c for _, c in live) <= prescribed
        assert not (visit_reversed and standing)  # never a standing fill of a reversed visit's prescription
    finally:
        store.close()

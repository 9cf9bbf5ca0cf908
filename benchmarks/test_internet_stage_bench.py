"""What the "Internet+" / fund-supervision stage costs the writer: the same
batch of 512 outpatient settlements (benchmarks/conftest.py bills) with the
stage as shipped and with a stage that does nothing. The bills repeat three
persons, so after the first few every one is flagged (DUP_ITEM_SAME_DAY,
VISITS_PER_DAY): the flagged worst case, two flag rows per settlement.

Run as a script, it only settles (three warm-up batches, then BATCHES of
SIZE bills) with the stage as shipped or with none, for instruction counts:
the difference of two runs under valgrind, divided by the settlements it
adds, is the cost of one settlement; shipped minus none is the stage's:

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no \\
        .venv/bin/python benchmarks/test_internet_stage_bench.py --stage none --run 512 4   # and --run 512 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from medsettle.ledger.clock import FixedClock
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.internet_stage import InternetStage, Plan
from medsettle.ledger.settlement.model import Settlement
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

sys.path.insert(0, str(Path(__file__).parent))

from conftest import SETTLE_AT, make_bill  # noqa: E402

BATCH = 512


class NoStage(InternetStage):
    """The stage's interface, doing nothing: the baseline (its plan names no
    payee: the institution itself is paid). An InternetStage, as the
    processor's compiled field is typed, with every method replaced."""

    plan = Plan(None, None, None, "", 0, [], None)  # type: ignore[arg-type]

    def __init__(self) -> None: ...

    def begin(self, commands: Any, now: Any) -> None: ...
    def write(self) -> None: ...
    def committed(self) -> None: ...
    def rolled_back(self) -> None: ...
    def check_reversal(self, original: Any) -> None: ...
    def reverse(self, original: Any, reversal: Any) -> None: ...
    def stage(self, plan: Any, settlement: Any, setl_time_us: Any = None) -> None: ...

    def prepare(self, bill: Any, institution: Any, priced: Any, terms: Any, now: Any) -> tuple[Any, Any, Any]:
        return priced, terms, self.plan

    def after_split(self, plan: Any, split: Any) -> tuple[str, ...]:
        return ()


@pytest.mark.parametrize("stage", ["shipped", "none"])
def test_commit_batch_of_512_with_and_without_the_stage(benchmark, db_path, clock, stage):
    store = SqliteLedgerStore(db_path)
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    if stage == "none":
        processor._internet = NoStage()  # type: ignore[assignment]

    def commands():
        return ([SettleCommand(make_bill(i), persist=True) for i in range(BATCH)],), {}

    outcomes = benchmark.pedantic(processor.run_batch, setup=commands, rounds=20, warmup_rounds=2)
    assert len(outcomes) == BATCH and all(isinstance(o, Settlement) for o in outcomes)
    flags = store.reader().execute("SELECT COUNT(*) FROM audit_flags").fetchone()[0]
    assert (flags > 0) == (stage == "shipped")
    store.close()


def run_only(stage: str, size: int, batches: int, folder: Path) -> None:
    clock = FixedClock(SETTLE_AT)
    store = SqliteLedgerStore(folder / "run.db")
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    if stage == "none":
        processor._internet = NoStage()  # type: ignore[assignment]
    for _ in range(3):
        processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(size)])
    for _ in range(batches):
        outcomes = processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(size)])
        assert all(isinstance(o, Settlement) for o in outcomes), outcomes[:1]
    store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", choices=("shipped", "none"), default="shipped")
    parser.add_argument("--run", type=int, nargs=2, metavar=("SIZE", "BATCHES"), required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_only(args.stage, *args.run, Path(tmp))

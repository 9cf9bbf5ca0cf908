"""CPU per settlement of SettlementProcessor.run_batch (process time, median
of many rounds), for batches of 512 and of 11 bills (benchmarks/conftest.py
bills), and optionally a cProfile of the batch of 512.

    .venv/bin/python benchmarks/writer_cpu.py [--rounds N] [--profile]

--run SIZE BATCHES only runs three warm-up batches and then BATCHES batches
of SIZE bills, for instruction counts that do not depend on the machine's
load: the difference of two runs under valgrind, divided by the settlements
(or batches) it adds, is the cost of one, start-up cancelled:

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no \\
        .venv/bin/python benchmarks/writer_cpu.py --run 512 4   # and --run 512 1
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import SETTLE_AT, make_bill  # noqa: E402

from medsettle.ledger.clock import FixedClock  # noqa: E402
from medsettle.ledger.service import open_reference  # noqa: E402
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor  # noqa: E402
from medsettle.ledger.storage.sqlite import SqliteLedgerStore  # noqa: E402


def per_settlement_us(batch: int, rounds: int, folder: Path) -> tuple[float, float]:
    """(minimum, median) CPU microseconds per settlement over the rounds."""
    clock = FixedClock(SETTLE_AT)
    store = SqliteLedgerStore(folder / f"cpu{batch}.db")
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    samples = []
    for r in range(rounds + 3):
        commands = [SettleCommand(make_bill(i), persist=True) for i in range(batch)]
        start = time.process_time()
        processor.run_batch(commands)
        if r >= 3:  # warm-up
            samples.append((time.process_time() - start) / batch * 1e6)
    store.close()
    return min(samples), statistics.median(samples)


def run_only(size: int, batches: int, folder: Path) -> None:
    clock = FixedClock(SETTLE_AT)
    store = SqliteLedgerStore(folder / "run.db")
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    for _ in range(3):
        processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(size)])
    for _ in range(batches):
        outcomes = processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(size)])
        assert all(outcome.setl_id for outcome in outcomes), outcomes[:1]
    store.close()


def profile(folder: Path) -> None:
    clock = FixedClock(SETTLE_AT)
    store = SqliteLedgerStore(folder / "profile.db")
    processor = SettlementProcessor(store, open_reference(store, clock), clock)
    processor.run_batch([SettleCommand(make_bill(i), persist=True) for i in range(512)])
    profiler = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
    for _ in range(10):
        commands = [SettleCommand(make_bill(i), persist=True) for i in range(512)]
        profiler.enable()
        processor.run_batch(commands)
        profiler.disable()
    store.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--run", type=int, nargs=2, metavar=("SIZE", "BATCHES"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.run:
            run_only(*args.run, folder)
            return
        if args.profile:
            profile(folder)
            return
        big = per_settlement_us(512, args.rounds // 3 or 1, folder)
        small = per_settlement_us(11, args.rounds * 5, folder)
        print(f"us CPU per settlement, min / median: batch 512: {big[0]:6.1f} / {big[1]:6.1f}   "
              f"batch 11: {small[0]:6.1f} / {small[1]:6.1f}")


if __name__ == "__main__":
    main()

"""The writer's whole path from request bytes, as the writer process runs
it: a batch frame in (server/wire.py), SettleRequest bytes parsed,
converted, validated, settled (SettlementProcessor.run_batch on SQLite) and
answered as SettleResult bytes in an answers frame. The requests are the
load generator's (client/loadgen.py BillFactory: three-line outpatient
bills, a quarter of them cross-region) over its synthetic persons.

For instruction counts, which do not depend on the machine's load: every
run prepares the same requests (--prepared batches), runs three warm-up
batches and then BATCHES batches of SIZE; the difference of two runs under
valgrind, divided by the settlements it adds, is the cost of one:

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/wire_cpu.py --run 11 80   # and --run 11 20

--part process runs only SettlementProcessor.run_batch over commands
parsed while preparing: whole minus process is the parse, conversion,
validation, result and frames. Without --run it prints CPU microseconds
per settlement (median of rounds of process time) of both parts.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))

from conftest import SETTLE_AT  # noqa: E402

from medsettle.client.loadgen import BillFactory, BillMix, synthetic_reference  # noqa: E402
from medsettle.ledger.clock import FixedClock  # noqa: E402
from medsettle.ledger.reference.loader import parse_document, sample_document  # noqa: E402
from medsettle.ledger.settlement.process import SettlementProcessor  # noqa: E402
from medsettle.ledger.storage.sqlite import SqliteLedgerStore  # noqa: E402
from medsettle.server import wire  # noqa: E402
from medsettle.server.writes import WriteRequests  # noqa: E402

WARMUP_BATCHES = 3
# As many persons as `medsettle load` makes (BillFactory draws them at random).
PERSONS = 10_000


def open_writer(folder: Path) -> tuple[SqliteLedgerStore, WriteRequests]:
    clock = FixedClock(SETTLE_AT)
    store = SqliteLedgerStore(folder / "wire.db")
    doc = synthetic_reference(sample_document(), PERSONS)
    data, persons = parse_document(doc)
    store.save_reference(json.dumps(doc, ensure_ascii=False), persons, clock.now())
    processor = SettlementProcessor(store, data, clock)
    return store, WriteRequests(processor, clock, None, store.rollback)


def request_frames(size: int, batches: int) -> list[bytes]:
    """One batch frame (wire.frame of a batch body) of SettleRequest bytes per batch."""
    bills = BillFactory(BillMix(persons=PERSONS), seed=20261206)
    return [wire.frame(wire.batch_body([(wire.SETTLE, bills.bill().SerializeToString()) for _ in range(size)]))
            for _ in range(batches)]


def whole_batch(requests: WriteRequests, frames: list[bytes]) -> Callable[[int], Any]:
    """A batch as the writer child runs it, but for the pipes' system calls."""
    reader = wire.FrameReader()

    def run(number: int) -> Any:
        (body,) = reader.feed(frames[number])
        return wire.answers_of(wire.frame(requests.run_body(body))[wire.FRAME_HEADER_BYTES:])
    return run


def process_batch(requests: WriteRequests, frames: list[bytes]) -> Callable[[int], Any]:
    """Only the processor's run_batch, over commands parsed beforehand."""
    commands = [[requests._command(kind, data) for kind, data in wire.writes_of(frame[wire.FRAME_HEADER_BYTES:])]
                for frame in frames]
    processor = requests._processor
    return lambda number: processor.run_batch(commands[number])


PARTS = {"whole": whole_batch, "process": process_batch}


def check(outcomes: Any) -> None:
    for outcome in outcomes:
        if isinstance(outcome, bytes):
            wire.result_of(outcome)  # raises the refusal, if any
        elif not getattr(outcome, "setl_id", ""):
            raise AssertionError(outcome)


def run_only(part: str, size: int, batches: int, prepared: int, folder: Path) -> None:
    if WARMUP_BATCHES + batches > prepared:
        raise SystemExit(f"--prepared must be at least {WARMUP_BATCHES + batches}")
    store, requests = open_writer(folder)
    run = PARTS[part](requests, request_frames(size, prepared))
    for number in range(WARMUP_BATCHES + batches):
        check(run(number))
    store.close()


def per_settlement_us(part: str, size: int, rounds: int, folder: Path) -> tuple[float, float]:
    """(minimum, median) CPU microseconds per settlement over the rounds."""
    store, requests = open_writer(folder / part)
    run = PARTS[part](requests, request_frames(size, WARMUP_BATCHES + rounds))
    samples = []
    for number in range(WARMUP_BATCHES + rounds):
        start = time.process_time()
        run(number)
        if number >= WARMUP_BATCHES:
            samples.append((time.process_time() - start) / size * 1e6)
    store.close()
    return min(samples), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=sorted(PARTS), default="whole")
    parser.add_argument("--run", type=int, nargs=2, metavar=("SIZE", "BATCHES"))
    parser.add_argument("--prepared", type=int, default=83, help="batches prepared by every --run (default 83)")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.run:
            run_only(args.part, *args.run, args.prepared, folder)
            return
        for part in sorted(PARTS):
            (folder / part).mkdir()
            gc.collect()
            low, median = per_settlement_us(part, 11, args.rounds, folder)
            print(f"{part:8s} batch 11: us CPU per settlement, min / median: {low:6.1f} / {median:6.1f}")


if __name__ == "__main__":
    main()

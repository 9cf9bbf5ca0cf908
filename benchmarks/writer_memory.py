"""What the writer's memory holds as it settles, round by round: the
writer process's path (benchmarks/wire_cpu.py: batch frames of the load
generator's bills, parsed, settled on SQLite, answered) in one process,
opened as the writer process opens its ledger, with its WAL syncer and
checkpointer threads (--no-threads: no syncer), and after each round of
settlements the figures of memory_probe/memory_figures.py (RssAnon,
Python's blocks, SQLite's heap, glibc's arenas); with --trace FRAMES the
tracemalloc lines that grew most since the round before (several times
slower; MEDSETTLE_PURE=1 names lines in the compiled modules too).

    .venv/bin/python benchmarks/writer_memory.py --rounds 8 --round 20000 --trace 1

The bills are made batch by batch (not prepared), so what grows is the
writer's, not the inputs'. Batches are of random sizes (--batch, default 1
to 48), as under unary load. In one process this path does not show what
the writer process's reads of its pipe did to glibc's heap (--pipe comes
closer); for the writer process itself under `medsettle load`, see
memory_probe/sitecustomize.py."""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "memory_probe"))

import memory_figures  # noqa: E402
from wire_cpu import PERSONS, check, open_writer  # noqa: E402

from medsettle.client.loadgen import BillFactory, BillMix  # noqa: E402
from medsettle.ledger.clock import SystemClock  # noqa: E402
from medsettle.ledger.service import open_reference  # noqa: E402
from medsettle.ledger.settlement.process import SettlementProcessor  # noqa: E402
from medsettle.ledger.storage.backends import open_ledger  # noqa: E402
from medsettle.server.writes import WriteRequests  # noqa: E402
from medsettle.ledger.storage.writer_process import READ_BYTES  # noqa: E402
from medsettle.ledger.storage.wal_sync import AnswersAfterSync, pipelined_wal  # noqa: E402
from medsettle.server import wire  # noqa: E402

def report(settled: int) -> None:
    print(f"{settled:>9,d} " + memory_figures.line(memory_figures.figures()), flush=True)


def sync_failed(error: Exception) -> None:
    print(f"fsync of the WAL failed ({error})", file=sys.stderr, flush=True)
    os._exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--round", type=int, default=20_000, help="settlements per round")
    parser.add_argument("--batch", type=int, nargs=2, default=(1, 48), metavar=("LEAST", "MOST"),
                        help="settlements per batch, drawn at random (unary load: from 1 to its calls in flight)")
    parser.add_argument("--persons", type=int, default=PERSONS)
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES", help="tracemalloc with this many frames")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--fixed-clock", action="store_true", help="wire_cpu.py's fixed clock, not the system's")
    parser.add_argument("--pipe", action="store_true", help="each batch's frame read from a pipe, as the child reads")
    parser.add_argument("--no-threads", action="store_true", help="no WAL syncer thread (nor its fsyncs)")
    args = parser.parse_args()
    if args.persons != PERSONS:
        import wire_cpu
        wire_cpu.PERSONS = args.persons
    with tempfile.TemporaryDirectory() as tmp:
        store, requests = open_writer(Path(tmp))  # the ledger with the load's persons
        if not args.fixed_clock:  # opened again as the writer process opens it, on the system's clock
            store.close()
            clock = SystemClock()
            store = open_ledger(Path(tmp) / "wire.db")
            requests = WriteRequests(SettlementProcessor(store, open_reference(store, clock), clock), clock, None,
                                     store.rollback)
        after_sync: Any = None
        if not args.no_threads:
            wal = pipelined_wal(store)
            assert wal is not None
            sink = os.open(os.devnull, os.O_WRONLY)
            after_sync = AnswersAfterSync(wal.sync, lambda data: os.write(sink, data), sync_failed)
        sizes = random.Random(20261206)
        bills = BillFactory(BillMix(persons=args.persons), seed=20261206)
        reader = wire.FrameReader()
        pipe = os.pipe() if args.pipe else None
        if args.trace:
            tracemalloc.start(args.trace)
        print(f"{'settled':>9s} " + memory_figures.header())
        report(0)
        snapshot = tracemalloc.take_snapshot() if args.trace else None
        settled, started = 0, time.process_time()
        for _ in range(args.rounds):
            goal = settled + args.round
            while settled < goal:
                size = sizes.randint(*args.batch)
                frame = wire.frame(wire.batch_body(
                    [(wire.SETTLE, bills.bill().SerializeToString()) for _ in range(size)]))
                if pipe is None:
                    (body,) = reader.feed(frame)
                else:  # as the writer process reads its batches: os.read of up to READ_BYTES
                    os.write(pipe[1], frame)
                    (body,) = reader.feed(os.read(pipe[0], READ_BYTES))
                answers = requests.run_body(body)
                if after_sync is not None:
                    after_sync.settled(wire.frame(answers))
                check(wire.answers_of(answers))
                settled += size
            report(settled)
            if snapshot is not None:
                newer = tracemalloc.take_snapshot()
                memory_figures.top_growth(snapshot, newer, args.top)
                snapshot = newer
        print(f"CPU {time.process_time() - started:.1f} s")
        connections = {"writer": store.writer_connection()}
        if store.wal_checkpointer is not None and store.wal_checkpointer._conn is not None:
            connections["checkpointer"] = store.wal_checkpointer._conn
        for name, conn in connections.items():
            print(f"SQLite heap of the {name}'s connection, MiB: "
                  + ", ".join(f"{use} {size:.2f}" for use, size in memory_figures.sqlite_connection(conn).items()))
        if after_sync is not None:
            after_sync.close()
        store.close()


if __name__ == "__main__":
    main()

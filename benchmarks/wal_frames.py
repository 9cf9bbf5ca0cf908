"""Which b-trees a batch writes: the WAL frames of each batch's commit, by
table or index, on a ledger that already holds --prefill settlements (a
randomly keyed index touches more leaf pages the more it holds).

The requests are wire_cpu.py's (the load generator's bills). The WAL is
not checkpointed while the batches run, so every commit's frames stay in
the -wal file; each frame's header names its page, which dbstat maps to
the b-tree it belongs to.

    .venv/bin/python benchmarks/wal_frames.py --prefill 50000 --size 11 --batches 40
"""

from __future__ import annotations

import argparse
import collections
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import wire_cpu  # noqa: E402

from medsettle.ledger.storage import sqlite as ledger_sqlite  # noqa: E402

WAL_HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24


def commits(wal: bytes, page_bytes: int) -> list[list[int]]:
    """The page numbers of each committed transaction's frames, in WAL order."""
    salt = wal[16:24]
    found, pending = [], []
    at = WAL_HEADER_BYTES
    while at + FRAME_HEADER_BYTES + page_bytes <= len(wal):
        pgno, db_pages = struct.unpack(">II", wal[at:at + 8])
        if wal[at + 8:at + 16] != salt:
            break  # a frame of an earlier WAL generation
        pending.append(pgno)
        if db_pages:
            found.append(pending)
            pending = []
        at += FRAME_HEADER_BYTES + page_bytes
    return found


def btree_of_pages(conn) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {pgno: name for name, pgno in conn.execute("SELECT name, pageno FROM dbstat")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefill", type=int, default=50_000, help="settlements stored before measuring")
    parser.add_argument("--size", type=int, default=11, help="settlements per measured batch")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="a folder to leave the ledger in (wire.db), for a look at it")
    args = parser.parse_args()
    ledger_sqlite.CHECKPOINT_INTERVAL_S = 3_600.0  # nothing copies the WAL while the batches run
    fill_size = 256
    fill_batches = (args.prefill + fill_size - 1) // fill_size
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        store, requests = wire_cpu.open_writer(folder)
        fill = wire_cpu.whole_batch(requests, wire_cpu.request_frames(fill_size, fill_batches))
        for number in range(fill_batches):
            wire_cpu.check(fill(number))
        conn = store.writer_connection()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_bytes = conn.execute("PRAGMA page_size").fetchone()[0]
        run = wire_cpu.whole_batch(requests, wire_cpu.request_frames(args.size, args.batches))
        for number in range(args.batches):
            wire_cpu.check(run(number))
        wal = (folder / "wire.db-wal").read_bytes()
        names = btree_of_pages(conn)
        found = commits(wal, page_bytes)
        store.close()
    by_btree: collections.Counter[str] = collections.Counter()
    for pages in found:
        by_btree.update(names.get(pgno, "(free or new)") for pgno in pages)
    frames = sum(len(pages) for pages in found)
    settlements = args.size * len(found)
    print(f"{len(found)} commits of {args.size} over {args.prefill} stored, page {page_bytes} B: "
          f"{frames / len(found):.1f} frames per batch, "
          f"{frames * (page_bytes + FRAME_HEADER_BYTES) / settlements:.0f} WAL bytes per settlement")
    for name, count in by_btree.most_common():
        print(f"  {name:36s} {count / len(found):6.2f} frames per batch")


if __name__ == "__main__":
    main()

"""The writer process on SQLite commits at synchronous=NORMAL and answers a
batch only after an fsync of the WAL begun after its commit
(ledger/storage/wal_sync.py). Here the writer process's own loop
(_serve_batches, on this thread, over real pipes and a real ledger file)
runs while the fsync is held: the batch is committed, says so, and a reader
on another connection sees its settlement; its caller gets nothing until
the fsync returns."""

from __future__ import annotations

import gc
import os
import select
import signal
import sqlite3
import threading
from multiprocessing.connection import Connection
from typing import Any

from medsettle.ledger.service import open_reference
from medsettle.ledger.storage import wal_sync
from medsettle.ledger.storage.rerun_counts import RerunCounts
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.wal_figures import WalFigures
from medsettle.ledger.storage.writer_process import SETTLED_FRAME, _serve_batches
from medsettle.server import wire
from medsettle.v1 import settlement_pb2 as pb

WAIT_S = 20.0


class _Answers:
    """The gRPC process's end of the answers pipe: whole frames, or None if none comes within wait_s."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.frames = wire.FrameReader()
        self.ready: list[bytes] = []

    def next(self, wait_s: float = WAIT_S) -> bytes | None:
        while not self.ready:
            readable, _, _ = select.select([self.fd], [], [], wait_s)
            if not readable:
                return None
            data = os.read(self.fd, 1 << 16)
            if not data:
                return None
            self.ready += self.frames.feed(data)
        return self.ready.pop(0)


def test_no_answer_leaves_the_writer_process_before_the_fsync_covering_its_commit(tmp_path, clock, bill, monkeypatch):
    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    store.close()

    syncing, release = threading.Event(), threading.Event()
    real_sync = wal_sync.WalFile.sync

    def held_sync(self: wal_sync.WalFile) -> None:
        syncing.set()
        assert release.wait(WAIT_S)
        real_sync(self)

    monkeypatch.setattr(wal_sync.WalFile, "sync", held_sync)
    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()
    request = bill(msgid="HELD-SYNC-1")
    seen: dict[str, Any] = {}

    def gRPC_process() -> None:  # noqa: N802
        answers = _Answers(answers_read)
        try:
            seen["ready"] = answers.next()
            os.write(commands_write, wire.frame(wire.batch_body([(wire.SETTLE, request.SerializeToString())])))
            seen["settled"] = answers.next()
            seen["sync held"] = syncing.wait(WAIT_S)
            seen["answer while held"] = answers.next(wait_s=0.5)
            with sqlite3.connect(db) as reader:
                seen["rows seen"] = reader.execute("SELECT count(*) FROM settlements WHERE msgid = ?",
                                                   (request.msgid,)).fetchone()[0]
            release.set()
            seen["answer"] = answers.next()
        finally:
            release.set()
            os.write(commands_write, wire.frame(b""))  # stop

    driver = threading.Thread(target=gRPC_process)
    driver.start()
    thresholds, sigint = gc.get_threshold(), signal.getsignal(signal.SIGINT)
    # The writer process's loop, on the main thread (it sets a signal handler).
    try:
        _serve_batches(Connection(commands_read, writable=False), Connection(answers_write, readable=False), str(db),
                       clock, None, Connection(os.dup(RerunCounts().fd)), Connection(os.dup(WalFigures().fd)))
    finally:  # the loop settles the collector and ignores SIGINT as a writer process's own: not this one's
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        # An ignored SIGINT is inherited by every process this one starts later, and a shell cannot trap
        # a signal ignored on entry: scripts/cluster.sh, started by a later test, then ignored its Ctrl-C.
        signal.signal(signal.SIGINT, sigint)
    driver.join(WAIT_S)
    os.close(commands_write)
    os.close(answers_read)

    assert seen["ready"] == b"ready"
    assert wire.frame(seen["settled"]) == SETTLED_FRAME
    assert seen["sync held"]
    assert seen["answer while held"] is None  # committed, said settled, and not answered
    assert seen["rows seen"] == 1  # what a reader on another connection may see before the fsync
    (answer,) = wire.answers_of(seen["answer"])
    assert pb.SettleResult.FromString(wire.result_of(answer)).msgid == request.msgid

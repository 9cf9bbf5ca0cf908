"""Review: the WAL checkpointer's thread must outlive whatever a round
raises, including an error whose text Python cannot encode as UTF-8 (a
path decoded with surrogateescape, say): publishing that text to the
shared figures must not end the thread (the WAL would then grow without
bound, and nothing would say so)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from medsettle.ledger.storage import sqlite as sqlite_store
from medsettle.ledger.storage import wal_figures
from medsettle.ledger.storage.sqlite import WalCheckpointer
from medsettle.ledger.storage.wal_figures import WalFigures, WalState

UNENCODABLE = "cannot open /data/ledger-\udcff.db"  # os.fsdecode of a path that is not UTF-8


def test_a_failure_text_that_is_not_utf8_is_published_readably() -> None:
    figures = WalFigures()
    try:
        figures.publish(WalState(failures=1, last_failure=UNENCODABLE))
        back = figures.read()
        assert back.failures == 1 and back.last_failure.startswith("cannot open /data/ledger-")
    finally:
        figures.close()


def test_the_checkpointer_outlives_a_failure_whose_text_is_not_utf8(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()

    def connect(conn_path):  # type: ignore[no-untyped-def]
        raise RuntimeError(UNENCODABLE)

    monkeypatch.setattr(sqlite_store, "connect", connect)
    monkeypatch.setattr(WalCheckpointer, "MAX_BACKOFF_S", 0.02)
    figures = WalFigures()
    wal_figures.publish_checkpoints(str(path), figures)
    checkpointer = WalCheckpointer(str(path), interval_s=0.01, bound_frames=128)
    try:
        deadline = time.monotonic() + 20
        while checkpointer.failures < 3 and checkpointer._thread.is_alive():
            assert time.monotonic() < deadline, "no three failed rounds"
            time.sleep(0.01)
        assert checkpointer._thread.is_alive()
        assert figures.read().failures >= 1 and figures.read().failing_since_s > 0
    finally:
        checkpointer.stop()
        wal_figures.withdraw(str(path), figures)
        figures.close()

"""A server stopped on a fenced ledger (ledger/storage/fence.py) leaves its
files as the writer process left them: the close of the gRPC process's
connections, the last to the file, would otherwise checkpoint the WAL,
copying into the ledger what the page cache holds of the commits the
failed fsync lost (or what the disk holds, once those pages were evicted)
and deleting the WAL whose checksums let recovery drop them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import ServerThread
from writer_faults import fsync_trigger, serve_with_failing_fsync
from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.storage import writer_process

WAIT_S = 30.0


def test_stopping_a_server_on_a_fenced_ledger_checkpoints_nothing(
        tmp_path: Path, clock, bill, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_process, "_serve_batches", serve_with_failing_fsync)
    db = tmp_path / "ledger.db"
    wal = Path(f"{db}-wal")
    server = ServerThread(db, clock, writer_process=True).start()
    writer = server.service.writer_process
    try:
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=20.0, retries=0) as client:
            client.settle(bill(msgid="FENCE-CLOSE-1"))
            fsync_trigger(db).touch()
            with pytest.raises(CallRefused):
                client.settle(bill(msgid="FENCE-CLOSE-2"))
            deadline = time.monotonic() + WAIT_S
            while writer.fenced is None:
                assert time.monotonic() < deadline, "waited for the fence"
                time.sleep(0.05)
        before = (db.read_bytes(), wal.read_bytes())  # as the writer process left them
    finally:
        server.stop()
    assert wal.exists(), "the WAL was checkpointed and deleted by the server's close"
    assert (db.read_bytes(), wal.read_bytes()) == before

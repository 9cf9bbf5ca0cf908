"""Review: the writer process's syncer thread (AnswersAfterSync) writes
every answer of a SQLite writer process. If it ended on an error it does
not expect, the process would go on committing batches whose answers
nobody writes: every caller waits out its deadline, retries, waits again,
while the process looks alive (health SERVING). Whatever the sync raises,
the failure handler runs (which stops the process, so the server tells
the callers to retry and starts another writer)."""

from __future__ import annotations

import pytest

from medsettle.ledger.storage.wal_sync import AnswersAfterSync

WAIT_S = 20.0


@pytest.mark.parametrize("fault", [AttributeError("module 'os' has no attribute 'fdatasync'"),
                                   RuntimeError("a defect in the sync")], ids=["attribute", "runtime"])
def test_a_sync_that_raises_anything_stops_the_process_and_answers_nothing(fault: Exception) -> None:
    failures: list[BaseException] = []
    writes: list[bytes] = []

    def sync() -> None:
        raise fault

    answers = AnswersAfterSync(sync, writes.append, failures.append)
    answers.settled(b"a")
    answers._thread.join(WAIT_S)
    assert not answers._thread.is_alive()
    assert writes == [] and failures == [fault]

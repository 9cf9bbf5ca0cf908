"""A batch that meets another writer's commit (WriteConflict) is run again
from the start, a bounded number of times, and answers as if it had run
alone; past the bound every command is told to retry with the same msgid."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.port import MAX_BATCH_ATTEMPTS, StorageError, WriteConflict
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

CLOCK = FixedClock(dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ))


class ConflictingStore(SqliteLedgerStore):
    """A SQLite ledger whose first `conflicts` commits meet another writer
    (and, as a shared backend would, lose the transaction), and which
    rereads persons every batch as a shared backend must."""

    sole_writer = False

    def __init__(self, path: Path, conflicts: int) -> None:
        super().__init__(path)
        self.conflicts_left = conflicts
        self.person_loads = 0

    def load_persons(self, psn_nos: set[str]) -> Any:
        self.person_loads += 1
        return super().load_persons(psn_nos)

    def commit(self) -> None:
        if self.conflicts_left:
            self.conflicts_left -= 1
            self.rollback()
            raise WriteConflict("could not serialize access due to concurrent update")
        super().commit()


def bill(msgid: str) -> Bill:
    return Bill(msgid=msgid, fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
                insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
                fee_lines=(FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 1, 3500)), acct_used_flag=True)


def test_a_conflicting_batch_is_run_again_and_settles_once(tmp_path: Path) -> None:
    store = ConflictingStore(tmp_path / "l.db", conflicts=MAX_BATCH_ATTEMPTS - 1)
    processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
    outcomes = processor.run_batch([SettleCommand(bill("M1"), True), SettleCommand(bill("M2"), True)])
    assert all(isinstance(o, Settlement) for o in outcomes)
    assert processor.conflicts == MAX_BATCH_ATTEMPTS - 1
    assert store.person_loads == MAX_BATCH_ATTEMPTS  # not the cache: each attempt reads the person again
    rows = store.reader().execute("SELECT msgid FROM settlements ORDER BY setl_no").fetchall()
    assert rows == [("M1",), ("M2",)]
    # the two settlements were split one after the other, as a lone writer splits them
    assert outcomes[1].split.balc_fen == outcomes[0].split.balc_fen - outcomes[1].split.acct_pay_fen
    store.close()


def test_past_the_bound_every_command_is_told_to_retry(tmp_path: Path) -> None:
    store = ConflictingStore(tmp_path / "l.db", conflicts=MAX_BATCH_ATTEMPTS)
    processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
    outcomes = processor.run_batch([SettleCommand(bill("M1"), True), SettleCommand(bill("M2"), True)])
    assert [o.reason for o in outcomes] == [Reason.STORAGE_UNAVAILABLE] * 2
    assert all(isinstance(o, Refused) and "retry with the same msgid" in o.message for o in outcomes)
    assert processor.conflicts == MAX_BATCH_ATTEMPTS
    assert store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0
    # the next batch goes through and numbers from where the ledger is
    (settled,) = processor.run_batch([SettleCommand(bill("M1"), True)])
    assert isinstance(settled, Settlement) and settled.setl_id == "S000000000001"
    store.close()


class FailingStore(SqliteLedgerStore):
    """A SQLite ledger whose insert or commit is refused (a full disk, a
    connection lost)."""

    def __init__(self, path: Path, fail_at: str) -> None:
        super().__init__(path)
        self.fail_at = fail_at

    def insert_batch(self, batch: Any) -> None:
        if self.fail_at == "insert":
            raise StorageError("disk I/O error")
        super().insert_batch(batch)

    def commit(self) -> None:
        if self.fail_at == "commit":
            self.rollback()
            raise StorageError("server closed the connection unexpectedly")
        super().commit()


def test_a_refused_insert_says_nothing_was_written_and_a_failed_commit_does_not(tmp_path: Path) -> None:
    """Only a write refused before the COMMIT is known to have written
    nothing; a COMMIT that fails (a connection lost) may have taken effect,
    so the caller is told the outcome is unknown, and the retry settles once."""
    for fail_at, says in (("insert", "nothing was written"), ("commit", "may or may not have been stored")):
        store = FailingStore(tmp_path / f"{fail_at}.db", fail_at)
        processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
        (refused,) = processor.run_batch([SettleCommand(bill("M1"), True)])
        assert isinstance(refused, Refused) and refused.reason == Reason.STORAGE_UNAVAILABLE
        assert says in refused.message and "retry with the same msgid" in refused.message
        store.fail_at = ""
        (settled,) = processor.run_batch([SettleCommand(bill("M1"), True)])
        assert isinstance(settled, Settlement)
        assert store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 1
        store.close()

"""A clearing checkpoint on PostgreSQL vouches that every settlement up to its
settlement number had its journal entry. Settlement numbers are taken from a
sequence when a writer's batch begins and commit in any order across writers:
a batch in flight while a clearing run reads its snapshot commits afterwards
with a number below the one the run's checkpoint records. That settlement
was never checked by the run, so the next run must still check it (here:
its entry cut from the end of its chain, the chain's head set back, a change
that only the search for settlements without an entry sees outside its
month's sums)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from medsettle.ledger.clearing import postgres_store
from medsettle.ledger.clearing.run import Outcome, RunResult
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.port import StorageError
from medsettle.ledger.storage.postgres import PostgresLedgerStore
from medsettle.ledger.verify import verify_database

from tests.e2e.test_clearing_cli import NOV_CLEARING_CLOCK, OCT_CLEARING_CLOCK
from tests.e2e.test_clearing_postgres import month_of_traffic
from tests.e2e.test_clearing_postgres_checkpoints import clear, query, tamper

NOVEMBER = FixedClock(dt.datetime(2026, 11, 16, 11, 0, tzinfo=CHINA_TZ))


def hebei_bill(msgid: str, psn_no: str, code: str, insuplc: str) -> Bill:
    """A local Hebei bill: in no book of province 44, so 44's month sums never see it."""
    return Bill(msgid=msgid, fixmedins_code=code, psn_no=psn_no, insutype=310, insuplc_admdvs=insuplc,
                visit_type=VisitType.OUTPATIENT,
                fee_lines=(FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 1, 3500)), acct_used_flag=True)


class Writer:
    """One server's writer on the ledger: its own chain, a real processor."""

    def __init__(self, url: str) -> None:
        self.store = PostgresLedgerStore(url)
        self.processor = SettlementProcessor(self.store, open_reference(self.store, NOVEMBER), NOVEMBER)

    def settle(self, bill: Bill) -> Settlement:
        (outcome,) = self.processor.run_batch([SettleCommand(bill, persist=True)])
        assert isinstance(outcome, Settlement), outcome
        return outcome

    def settle_held_at_commit(self, bill: Bill) -> tuple[threading.Event, Callable[[], Settlement]]:
        """Starts the batch and holds it just before COMMIT (its numbers taken,
        its rows written, invisible to others) until `release` is set."""
        at_commit, release = threading.Event(), threading.Event()
        real_commit = self.store.commit
        outcome: list[Settlement] = []

        def held_commit() -> None:
            at_commit.set()
            assert release.wait(60)
            real_commit()

        self.store.commit = held_commit  # type: ignore[method-assign]
        thread = threading.Thread(target=lambda: outcome.append(self.settle(bill)))
        thread.start()
        assert at_commit.wait(60), "the batch never reached its commit"

        def finish() -> Settlement:
            release.set()
            thread.join(60)
            del self.store.commit
            return outcome[0]

        return release, finish

    def close(self) -> None:
        self.store.close()


def clear_while_held(url: str, finish: Callable[[], Settlement]) -> tuple[RunResult, Settlement]:
    """Clears October for province 44 while the held batch is in flight; the
    batch is let go once the run has ended or waits for it (for its lock)."""
    done: list[RunResult] = []
    run = threading.Thread(target=lambda: done.append(clear(url, "44", "2026-10", OCT_CLEARING_CLOCK)))
    run.start()
    deadline = time.monotonic() + 60
    while run.is_alive() and not query(url, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' "
                                            "AND NOT granted AND database = "
                                            "(SELECT oid FROM pg_database WHERE datname = current_database())")[0][0]:
        assert time.monotonic() < deadline, "the run neither ended nor waited"
        time.sleep(0.02)
    settled = finish()
    run.join(60)
    return done[0], settled


def cut_from_its_chain(url: str, setl_id: str) -> None:
    """The settlement's entry and postings removed from the end of its chain,
    and the chain's recorded head set back to the entry before: every hash
    link and head still holds; only the settlement row is left without an entry."""
    entry_no, chain = query(url, "SELECT entry_no, chain_id FROM journal_entries WHERE setl_id = %s", setl_id)[0]
    assert query(url, "SELECT last_entry_no FROM chain_heads WHERE chain_id = %s", chain)[0][0] == entry_no
    before_no, before_hash = query(
        url, "SELECT entry_no, hash FROM journal_entries WHERE chain_id = %s AND entry_no < %s "
             "ORDER BY entry_no DESC LIMIT 1", chain, entry_no)[0]
    tamper(url, f"DELETE FROM journal_entries WHERE entry_no = {entry_no}")
    for posting_no, in query(url, "SELECT posting_no FROM postings WHERE entry_no = %s", entry_no):
        tamper(url, f"DELETE FROM postings WHERE posting_no = {posting_no}")
    tamper(url, f"UPDATE chain_heads SET last_entry_no = {before_no}, last_hash = '{before_hash}', "
                f"entries = entries - 1 WHERE chain_id = {chain}")


@pytest.mark.parametrize("in_flight_during_the_run", [False, True], ids=["committed-after", "in-flight"])
def test_a_settlement_committed_after_a_clearing_snapshot_is_still_checked_for_its_entry(
        pg_url: str, tmp_path: Path, in_flight_during_the_run: bool) -> None:
    month_of_traffic(pg_url, tmp_path)  # October, province 44 and others
    first, second = Writer(pg_url), Writer(pg_url)
    try:
        # the first writer's chain has an entry before the one that will be cut
        first.settle(hebei_bill("RACE-0", "13020000000000000001", "H13020100001", "130200"))
        late = hebei_bill("RACE-LATE", "13020000000000000001", "H13020100001", "130200")
        if in_flight_during_the_run:
            _, finish = first.settle_held_at_commit(late)  # takes its numbers now, commits after the run
        # another server's settlement, numbered after the held batch's, committed before the run
        other = second.settle(hebei_bill("RACE-OTHER", "13010000000000000001", "H13010100001", "130100"))

        if in_flight_during_the_run:
            october, settled = clear_while_held(pg_url, finish)
        else:
            october = clear(pg_url, "44", "2026-10", OCT_CLEARING_CLOCK)
            settled = first.settle(late)
        assert october.outcome is Outcome.CLEARED, october.breaks
    finally:
        first.close()
        second.close()
    recorded = query(pg_url, "SELECT MAX(setl_no) FROM chain_checkpoints")[0][0]
    if in_flight_during_the_run:  # the race this test is about: a number below the checkpoint's, committed after it
        assert int(settled.setl_id[1:]) < int(other.setl_id[1:]) <= recorded

    cut_from_its_chain(pg_url, settled.setl_id)
    november = clear(pg_url, "44", "2026-11", NOV_CLEARING_CLOCK)
    assert november.outcome is Outcome.BREAKS, "a settlement without a journal entry went unseen"
    missing = [b for b in november.breaks["breaks"] if b["kind"] == "missing_entry"]
    assert [b["where"] for b in missing] == [settled.setl_id], november.breaks


def test_a_batch_left_open_refuses_the_snapshot_after_a_bounded_wait_and_writers_go_on(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server stopped mid-batch holds its numbers' lock: a clearing run or
    verify waiting for it would make every writer's next batch wait behind
    it for as long. The wait is bounded; the run is refused (nothing read);
    the other servers settle on."""
    month_of_traffic(pg_url, tmp_path)
    monkeypatch.setattr(postgres_store, "SNAPSHOT_WAIT_MS", 300)
    stopped, other = Writer(pg_url), Writer(pg_url)
    try:
        stopped.store.begin()
        stopped.store.chain_head()  # its numbers taken, then nothing more: the server stopped here
        with pytest.raises(StorageError, match="open for over 0.3 s"):
            verify_database(pg_url)
        with pytest.raises(StorageError, match="run again"):
            clear(pg_url, "44", "2026-10", OCT_CLEARING_CLOCK)
        assert other.settle(hebei_bill("AFTER-WAIT", "13010000000000000001", "H13010100001", "130100")).setl_id
        stopped.store.rollback()
        assert clear(pg_url, "44", "2026-10", OCT_CLEARING_CLOCK).outcome is Outcome.CLEARED
    finally:
        stopped.close()
        other.close()
    assert verify_database(pg_url).ok

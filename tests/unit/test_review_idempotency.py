"""Insert-first idempotency on the sole writer (SQLite), adversarially: a
replay where the batch's first INSERT statements already went in, a replay
that in its first run would have spent the person's account, two requests
of one msgid inside one batch, replays and conflicts mixed with new bills.
Each answer is the one a batch reading its keys first would give, and the
ledger holds each settlement once and verifies."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import MAX_ROWS_PER_INSERT, SqliteLedgerStore
from medsettle.ledger.verify import verify_database

CLOCK = FixedClock(dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ))
CODE = "H44010100001"
PERSON = "44010000000000000001"


def bill(msgid: str, price: int = 2500, psn_no: str = PERSON, nonce: str = "") -> Bill:
    return Bill(msgid=msgid, fixmedins_code=CODE, psn_no=psn_no, insutype=310, insuplc_admdvs="440100",
                visit_type=VisitType.OUTPATIENT, fee_lines=(FeeLine("1", "S0001", 1, price), FeeLine("2", "XB0201", 1, 3500)),
                acct_used_flag=True, ecert_nonce=nonce, ecert_expires_us=2_000_000_000_000_000 if nonce else 0)


class Ledger:
    def __init__(self, path: Path, reads_keys_first: bool = False) -> None:
        self.path = path
        self.store = SqliteLedgerStore(path)
        if reads_keys_first:  # the path every batch took before insert-first: the reference answers
            self.store.sole_writer = False  # type: ignore[misc]
        self.processor = SettlementProcessor(self.store, open_reference(self.store, CLOCK), CLOCK)

    def settle(self, *bills: Bill) -> list[Any]:
        return self.processor.run_batch([SettleCommand(b, persist=True) for b in bills])

    def msgids(self) -> list[str]:
        return [r[0] for r in self.store.reader().execute("SELECT msgid FROM settlements ORDER BY setl_no")]

    def balances(self) -> list[tuple[Any, ...]]:
        return list(self.store.reader().execute("SELECT psn_no, acct_balc_fen FROM persons ORDER BY psn_no"))


@pytest.fixture
def ledgers(tmp_path: Path):
    """The sole writer (insert-first) and a reference that reads every key first, on two files."""
    fast, reference = Ledger(tmp_path / "fast.db"), Ledger(tmp_path / "reference.db", reads_keys_first=True)
    yield fast, reference
    fast.store.close()
    reference.store.close()


def _same(ledgers, *batches: list[Bill]) -> list[list[Any]]:  # type: ignore[no-untyped-def]
    """Runs the batches on both ledgers; asserts equal answers, rows and balances; the fast one's answers."""
    fast, reference = ledgers
    answers = []
    for batch in batches:
        got, expected = fast.settle(*batch), reference.settle(*batch)
        assert got == expected
        answers.append(got)
    assert fast.msgids() == reference.msgids()
    assert fast.balances() == reference.balances()
    assert verify_database(fast.path).ok
    return answers


def test_a_replay_after_a_full_insert_statement_of_new_bills_leaves_nothing_of_the_first_run(ledgers) -> None:
    """The replay's row is in the batch's second INSERT statement: the first one went in, then the
    UNIQUE index refused the replay; the rerun must start from nothing of it."""
    news = [bill(f"N{i:04d}", price=100 + i) for i in range(MAX_ROWS_PER_INSERT + 6)]
    [first], [*again] = _same(ledgers, [bill("M1")], news + [bill("M1")])
    assert again[-1] == first
    assert ledgers[0].processor.key_reruns == 1
    assert len(ledgers[0].msgids()) == len(news) + 1


def test_a_replay_that_would_spend_the_account_again_leaves_the_next_bill_its_balance(ledgers) -> None:
    """Run as new, the replay spends the person's account before the batch is refused by the index;
    the rerun's next bill of that person sees the balance the first request left."""
    _same(ledgers, [bill("M1", price=90_000)], [bill("M1", price=90_000), bill("M2", price=90_000)],
          [bill("M3", price=90_000)])


def test_one_msgid_twice_in_a_batch_settles_once_and_answers_both_alike(ledgers) -> None:
    [[one, two]] = _same(ledgers, [bill("M1"), bill("M1")])
    assert isinstance(one, Settlement) and one == two


def test_one_msgid_with_two_payloads_in_a_batch_is_a_conflict_for_the_second(ledgers) -> None:
    [[one, two]] = _same(ledgers, [bill("M1"), bill("M1", price=2600)])
    assert isinstance(one, Settlement)
    assert isinstance(two, Refused) and two.reason == Reason.IDEMPOTENCY_CONFLICT


def test_replays_conflicts_and_new_bills_mixed_answer_as_a_batch_reading_its_keys(ledgers) -> None:
    _same(ledgers, [bill("M1"), bill("M2", price=3000)],
          [bill("M3"), bill("M2", price=3001), bill("M1"), bill("M4"), bill("M3"), bill("M2", price=3000),
           replace(bill("M5"), psn_no="")])


def test_a_stored_conflict_and_a_replay_in_one_batch_after_a_restart(ledgers, tmp_path: Path) -> None:
    _same(ledgers, [bill("M1"), bill("M2")])
    for ledger in ledgers:  # a new writer on the same file: nothing in its memory
        ledger.store.close()
        ledger.__init__(ledger.path, reads_keys_first=ledger is ledgers[1])  # type: ignore[misc]
    _same(ledgers, [bill("M2", price=9), bill("M9"), bill("M1")])


def test_a_new_bill_s_e_cert_staged_in_the_run_the_index_refused_is_not_used_up_for_the_rerun(ledgers) -> None:
    """The first run stages M2's nonce, then the replay of M1 fails the batch on the index; the rerun
    must settle M2 with that nonce, not refuse it as already used."""
    [_, [settled, replay]] = _same(ledgers, [bill("M1")], [bill("M2", nonce="N2"), bill("M1")])
    assert isinstance(settled, Settlement) and isinstance(replay, Settlement)
    assert ledgers[0].processor.key_reruns == 1

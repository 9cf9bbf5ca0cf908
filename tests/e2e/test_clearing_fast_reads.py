"""The clearing run's two faster reads against the plain ones, on generated
months in real SQLite files:

- the entries since the checkpoint, read one row per entry with their
  postings as text (ClearingStore.entry_texts_since), give exactly the
  breaks of the row-by-row read (iter_entry_postings), whatever was changed
  after the checkpoint: an amount, a value's type, the order of an entry's
  postings, a field holding a separator, a posting added or removed, a
  settlement's amount, a link, an entry removed;
- the month's sums computed on worker threads, each statement bounded by
  the run's snapshot, are the sums read in the snapshot itself, and leave
  out what is appended after the snapshot began.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from medsettle.ledger.clearing import reconcile
from medsettle.ledger.clearing.month_sums import SnapshotMonthSums, ThreadedMonthSums
from medsettle.ledger.clearing.store import ClearingStore
from tests.oracle import clearing_bench

PERIOD = "2026-10"
UNVERIFIED = 300  # settlements after the checkpoint


BENCH = clearing_bench.load()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("month") / "month.db"
    BENCH.generate(path, 1500, 6, 60, 11, 1, UNVERIFIED)
    return path


def copy_of(generated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.db"
    with sqlite3.connect(generated) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def changed(db: Path, *statements: str) -> None:
    """Applies statements behind the service's back (the append-only triggers dropped)."""
    with sqlite3.connect(db) as conn:
        for trigger in ("postings_append_only_u", "postings_append_only_d", "settlements_append_only_u",
                        "journal_append_only_u", "journal_append_only_d"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for sql in statements:
            conn.execute(sql)


def checked_both_ways(db: Path) -> tuple[list, list, int, int]:  # type: ignore[type-arg]
    """(breaks by entry text, breaks by rows, entries checked by each)."""
    store = ClearingStore(db, read_only=True)
    try:
        with store.snapshot():
            head = store.journal_head()[0]
            fast, rows = reconcile.BreakLog(), reconcile.BreakLog()
            start = reconcile.checked_from(store, fast)
            assert start.entry_no > 0
            fast_seen = reconcile.verify_since(store, start, head, fast)
            rows_seen = reconcile._verify_rows_since(store, start, head, rows, None)
    finally:
        store.close()
    return fast.listed, rows.listed, fast_seen, rows_seen


# an entry well after the checkpoint and its postings' rowids, in every statement below
ENTRY = "(SELECT MAX(entry_no) - 40 FROM journal_entries WHERE kind = 'settle')"
FIRST_POSTING = f"(SELECT MIN(rowid) FROM postings WHERE entry_no = {ENTRY})"
LAST_POSTING = f"(SELECT MAX(rowid) FROM postings WHERE entry_no = {ENTRY})"
CHANGES = {
    "nothing": [],
    "an amount": [f"UPDATE postings SET amount_fen = amount_fen + 7 WHERE rowid = {FIRST_POSTING}"],
    # SQLite writes a blob's bytes into a text as they are: "440100" whether text or blob (the columns'
    # affinity turns a number into text, and a text of digits into a number, as they are stored)
    "an amount stored as bytes": [
        f"UPDATE postings SET amount_fen = CAST(CAST(amount_fen AS TEXT) AS BLOB) WHERE rowid = {FIRST_POSTING}"],
    "a book stored as bytes": [f"UPDATE postings SET book = CAST(book AS BLOB) WHERE rowid = {FIRST_POSTING}"],
    "the postings' order": [  # the first posting removed and appended again: same rows, another order
        "CREATE TEMP TABLE moved AS SELECT entry_no, setlym, book, account, amount_fen FROM postings "
        f"WHERE rowid = {FIRST_POSTING}",
        f"DELETE FROM postings WHERE rowid = {FIRST_POSTING}",
        "INSERT INTO postings (entry_no, setlym, book, account, amount_fen) SELECT * FROM moved",
    ],
    "a separator in a field": [  # book "A" account "x,y" read as book "A,x" account "y" would hash alike
        f"UPDATE postings SET book = book || ',' || substr(account, 1, instr(account, ':') - 1), "
        f"account = substr(account, instr(account, ':') + 1) WHERE rowid = {FIRST_POSTING}",
    ],
    "a zero posting added": [
        "INSERT INTO postings (entry_no, setlym, book, account, amount_fen) "
        f"SELECT entry_no, setlym, book, account, 0 FROM postings WHERE rowid = {LAST_POSTING}",
    ],
    "a posting removed": [f"DELETE FROM postings WHERE rowid = {LAST_POSTING}"],
    "a settlement's amount": [
        "UPDATE settlements SET acct_pay_fen = acct_pay_fen + 3 WHERE setl_id = "
        f"(SELECT setl_id FROM journal_entries WHERE entry_no = {ENTRY})",
    ],
    "a link": [f"UPDATE journal_entries SET prev_hash = hash WHERE entry_no = {ENTRY}"],
    "an entry removed": [f"DELETE FROM journal_entries WHERE entry_no = {ENTRY}"],
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_entries_read_as_text_break_exactly_as_entries_read_row_by_row(generated, tmp_path, change):
    db = copy_of(generated, tmp_path)
    changed(db, *CHANGES[change])
    fast, rows, fast_seen, rows_seen = checked_both_ways(db)
    assert fast == rows
    assert fast_seen == rows_seen >= UNVERIFIED - 1  # less the entry removed
    if change == "nothing":
        assert fast == []
    else:
        assert [b.kind for b in fast] == ["journal_entry"], fast
        assert "entry" in fast[0].where


def month_sums_of(store: ClearingStore, sums_type: type) -> tuple[dict, list]:  # type: ignore[type-arg]
    sums = sums_type(store, PERIOD, "44")
    try:
        return sums.balances(), sums.groups()
    finally:
        sums.close()


def test_month_sums_on_worker_threads_are_the_snapshots_and_leave_out_later_appends(generated, tmp_path):
    db = copy_of(generated, tmp_path)
    store = ClearingStore(db, read_only=True)
    try:
        with store.snapshot():
            in_snapshot = month_sums_of(store, SnapshotMonthSums)
            # a settlement of the month, its entry and postings appended meanwhile
            with sqlite3.connect(db) as writer:
                writer.execute("INSERT INTO settlements (setl_id, fixmedins_code, msgid, fingerprint, kind, "
                               "orig_setl_id, psn_no, insutype, insuplc_admdvs, mdtrtarea_admvs, clr_type, pay_loc, "
                               "setl_time_us, setlym, medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen, "
                               "preselfpay_amt_fen, inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, "
                               "fund_pay_sumamt_fen, psn_part_amt_fen, hosp_part_amt_fen, acct_pay_fen, "
                               "psn_cash_pay_fen, balc_fen, line_splits, audit_flags, payee_code) "
                               "SELECT 'LATE', fixmedins_code, 'LATE', fingerprint, kind, orig_setl_id, psn_no, "
                               "insutype, insuplc_admdvs, mdtrtarea_admvs, clr_type, pay_loc, setl_time_us, setlym, "
                               "medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen, preselfpay_amt_fen, "
                               "inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen, "
                               "psn_part_amt_fen, hosp_part_amt_fen, acct_pay_fen, psn_cash_pay_fen, balc_fen, "
                               "line_splits, audit_flags, payee_code FROM settlements "
                               "WHERE setlym = ? AND kind = 1 ORDER BY setl_no DESC LIMIT 1", (PERIOD,))
                writer.execute("INSERT INTO postings (entry_no, setlym, book, account, amount_fen) "
                               "SELECT entry_no + 1000000, setlym, book, account, amount_fen FROM postings "
                               "WHERE setlym = ? ORDER BY rowid DESC LIMIT 3", (PERIOD,))
            assert month_sums_of(store, ThreadedMonthSums) == in_snapshot
        # what was appended is there for the next run: the sums are bounded, not blind
        with store.snapshot():
            assert month_sums_of(store, ThreadedMonthSums) == month_sums_of(store, SnapshotMonthSums)
            assert month_sums_of(store, ThreadedMonthSums) != in_snapshot
    finally:
        store.close()

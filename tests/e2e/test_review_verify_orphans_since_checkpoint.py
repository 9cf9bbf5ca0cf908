"""`medsettle verify --since-checkpoint` names postings of no entry written
after the newest checkpoint, as clearing's check from the same checkpoint
does: such a posting is after what the checkpoint vouches for, and it
breaks the books' balances (`medsettle balances`). Only the full check
searched for them; the incremental one reported the ledger clean."""

from __future__ import annotations

import sqlite3

from tests.e2e.test_verify import settled, tamper  # noqa: F401  (settled is a fixture)
from tests.e2e.test_verify_checkpoint import verify_with
from tests.e2e.test_verify_postgres import query, two_chains  # noqa: F401  (two_chains is a fixture)
from tests.e2e.test_verify_postgres import tamper as tamper_pg
from tests.e2e.test_verify_postgres import verify_with as verify_pg

# A posting for an entry that does not exist: 100 fen into a fund's book, no credit.
ORPHAN = "INSERT INTO postings (entry_no, setlym, book, account, amount_fen) VALUES ({entry_no}, '2026-10', '{book}', '{account}', 100)"


def test_an_orphan_posting_after_the_checkpoint_is_named_on_sqlite(settled, db_path):  # noqa: F811
    assert verify_with(db_path, "--checkpoint")[0] == 0
    with sqlite3.connect(db_path) as conn:
        last, book, account = conn.execute(
            "SELECT MAX(p.entry_no), MIN(p.book), MIN(p.account) FROM postings p").fetchone()
    tamper(db_path, ORPHAN.format(entry_no=last + 5, book=book, account=account))
    code, report = verify_with(db_path, "--since-checkpoint", "--checkpoint")
    assert code == 1, report
    assert report["orphan_postings"] == 1
    assert report["recorded_checkpoint"] is None
    code, full = verify_with(db_path)
    assert code == 1 and full["orphan_postings"] == 1  # as the full check says


def test_an_orphan_posting_before_the_checkpoint_is_left_to_full_verify_on_sqlite(settled, db_path):  # noqa: F811
    with sqlite3.connect(db_path) as conn:
        book, account = conn.execute("SELECT MIN(book), MIN(account) FROM postings").fetchone()
    assert verify_with(db_path, "--checkpoint")[0] == 0
    tamper(db_path, ORPHAN.format(entry_no=0, book=book, account=account))  # under the checkpoint: trusted
    assert verify_with(db_path, "--since-checkpoint")[0] == 0
    code, full = verify_with(db_path)
    assert code == 1 and full["orphan_postings"] == 1


def test_an_orphan_posting_after_the_checkpoints_is_named_on_postgresql(two_chains):  # noqa: F811
    url, _ = two_chains
    assert verify_pg(url, "--checkpoint")[0] == 0
    last, book, account = query(url, "SELECT MAX(entry_no), MIN(book), MIN(account) FROM postings")[0]
    tamper_pg(url, ORPHAN.format(entry_no=last + 5, book=book, account=account))
    code, report = verify_pg(url, "--since-checkpoint", "--checkpoint")
    assert code == 1, report
    assert report["orphan_postings"] == 1
    assert report["recorded_checkpoints"] == []

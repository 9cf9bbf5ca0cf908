"""`medsettle verify`: an intact journal passes; a posting, an entry or a
settlement changed behind the service's back (append-only triggers dropped
first, as an attacker with file access would) is reported at the first bad
entry."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.posting.journal import entry_hash
from medsettle.ledger.posting.rules import Posting

TRAFFIC = [  # local, in-province and cross-province
    ("H44010100001", "44010000000000000001", "440100"),
    ("H44010100001", "44030000000000000001", "440300"),
    ("H44030100001", "31010000000000000001", "310100"),
    ("H13010100001", "44060000000000000001", "440600"),
]


@pytest.fixture
def settled(client, bill):
    results = [client.settle(bill(code=c, psn_no=p, insuplc=i)) for _ in range(3) for c, p, i in TRAFFIC]
    client.reverse("VERIFY-RV-1", results[1].fixmedins_code, results[1].setl_id)
    return results


def verify(db_path) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = CliRunner().invoke(main, ["verify", "--db", str(db_path), "--json"])
    return out.exit_code, json.loads(out.output)


def tamper(db_path, *statements: str) -> None:
    conn = sqlite3.connect(db_path)
    for trigger in ("postings_append_only_u", "journal_append_only_d", "journal_append_only_u",
                    "settlements_append_only_u"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_an_intact_journal_verifies(settled, db_path):
    code, report = verify(db_path)
    assert code == 0, report
    assert report["ok"] and report["entries"] == len(settled) + 1 and report["first_bad_entry"] is None
    human = CliRunner().invoke(main, ["verify", "--db", str(db_path)])
    assert human.exit_code == 0 and "hash chain is intact" in human.output


def test_a_changed_posting_is_the_first_bad_entry(settled, db_path):
    tamper(db_path, "UPDATE postings SET amount_fen = amount_fen + 100 WHERE rowid = "
                    "(SELECT MIN(rowid) FROM postings WHERE entry_no = 5)")
    code, report = verify(db_path)
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == 5
    assert "hash does not match" in report["first_bad_entry"]["problem"]
    assert any("sums to" in b for b in report["balance_breaks"])  # the moved 1 yuan unbalances its book


def test_a_rehashed_entry_is_caught_by_the_next_one(settled, db_path):
    # The tamperer changes entry 3's postings and recomputes its hash: entry 4 no longer chains to it.
    conn = sqlite3.connect(db_path)
    row = conn.execute("SELECT entry_no, setl_id, kind, setlym, created_us, prev_hash FROM journal_entries "
                       "WHERE entry_no = 3").fetchone()
    postings = [Posting(b, a, -amount) for b, a, amount in
                conn.execute("SELECT book, account, amount_fen FROM postings WHERE entry_no = 3 ORDER BY rowid")]
    conn.close()
    forged = entry_hash(row[5], *row[:5], postings)
    tamper(db_path, "UPDATE postings SET amount_fen = -amount_fen WHERE entry_no = 3",
           f"UPDATE journal_entries SET hash = '{forged}' WHERE entry_no = 3")
    code, report = verify(db_path)
    assert code == 1
    # entry 3 is self-consistent now but no longer matches its settlement's amounts; entry 4 does not chain
    assert report["first_bad_entry"]["entry_no"] == 3
    assert "settlement" in report["first_bad_entry"]["problem"]
    assert report["bad_entries"] == 2


def test_a_removed_entry_breaks_the_chain_at_its_successor(settled, db_path):
    tamper(db_path, "DELETE FROM journal_entries WHERE entry_no = 7")
    code, report = verify(db_path)
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == 8
    assert "missing" in report["first_bad_entry"]["problem"]
    assert report["orphan_postings"] > 0  # entry 7's postings are left without their entry


def test_a_changed_settlement_amount_no_longer_matches_its_postings(settled, db_path):
    setl_id = settled[2].setl_id
    tamper(db_path, f"UPDATE settlements SET hifp_pay_fen = hifp_pay_fen - 1 WHERE setl_id = '{setl_id}'")
    code, report = verify(db_path)
    assert code == 1
    assert report["first_bad_entry"]["setl_id"] == setl_id
    assert "postings differ" in report["first_bad_entry"]["problem"]


def test_verify_refuses_a_missing_database(tmp_path):
    out = CliRunner().invoke(main, ["verify", "--db", str(tmp_path / "none.db")])
    assert out.exit_code == 1 and "no database" in out.output

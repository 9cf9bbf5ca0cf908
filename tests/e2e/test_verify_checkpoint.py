"""`medsettle verify --checkpoint` and `--since-checkpoint` on a ledger
written by the real server: a checkpoint is recorded only after a clean
check; the next check covers only the entries added since; a change after
the checkpoint is named as full verify names it; a change before it is
outside what the incremental check rereads (the documented trust) and full
verify still names it; a checkpoint changed, or a journal changed under a
checkpoint, is a break and the whole journal is checked again."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from medsettle.cli import main
from tests.e2e.test_verify import TRAFFIC, settled, tamper, verify  # noqa: F401  (settled is a fixture)


def verify_with(db_path, *flags: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = CliRunner().invoke(main, ["verify", "--db", str(db_path), "--json", *flags])
    return out.exit_code, json.loads(out.output)


def settle_more(client, bill, rounds: int = 1) -> None:
    for _ in range(rounds):
        for code, psn_no, insuplc in TRAFFIC:
            client.settle(bill(code=code, psn_no=psn_no, insuplc=insuplc))


def journal_size(db_path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM journal_entries").fetchone()[0]


def test_the_next_check_covers_only_the_entries_added_since_the_checkpoint(settled, client, bill, db_path):
    entries = journal_size(db_path)
    code, first = verify_with(db_path, "--checkpoint")
    assert code == 0 and first["entries"] == entries
    assert first["recorded_checkpoint"]["entry_no"] == entries
    settle_more(client, bill)
    code, since = verify_with(db_path, "--since-checkpoint", "--checkpoint")
    assert code == 0, since
    assert since["since_entry_no"] == entries and since["entries"] == len(TRAFFIC)
    assert since["recorded_checkpoint"]["entry_no"] == entries + len(TRAFFIC)
    code, nothing_new = verify_with(db_path, "--since-checkpoint", "--checkpoint")
    assert code == 0 and nothing_new["entries"] == 0 and nothing_new["recorded_checkpoint"] is None
    human = CliRunner().invoke(main, ["verify", "--db", str(db_path), "--since-checkpoint"])
    assert human.exit_code == 0 and f"after the checkpoint at entry {entries + len(TRAFFIC)}" in human.output


def test_a_change_after_the_checkpoint_is_named_and_no_checkpoint_is_recorded(settled, client, bill, db_path):
    assert verify_with(db_path, "--checkpoint")[0] == 0
    checkpointed = journal_size(db_path)
    settle_more(client, bill)
    tamper(db_path, "UPDATE postings SET amount_fen = amount_fen + 100 WHERE rowid = "
                    f"(SELECT MIN(rowid) FROM postings WHERE entry_no = {checkpointed + 2})")
    code, report = verify_with(db_path, "--since-checkpoint", "--checkpoint")
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == checkpointed + 2
    assert "hash does not match" in report["first_bad_entry"]["problem"]
    assert report["recorded_checkpoint"] is None


def test_a_change_before_the_checkpoint_is_left_to_full_verify(settled, db_path):
    assert verify_with(db_path, "--checkpoint")[0] == 0
    tamper(db_path, "UPDATE postings SET amount_fen = amount_fen + 100 WHERE rowid = "
                    "(SELECT MIN(rowid) FROM postings WHERE entry_no = 5)")
    code, since = verify_with(db_path, "--since-checkpoint")
    assert code == 0 and since["entries"] == 0  # what the checkpoint vouches for is not reread
    code, full = verify_with(db_path)
    assert code == 1 and full["first_bad_entry"]["entry_no"] == 5


def test_a_changed_checkpoint_is_a_break_and_the_whole_journal_is_checked(settled, db_path):
    assert verify_with(db_path, "--checkpoint")[0] == 0
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER chain_checkpoints_append_only_u")
        conn.execute("UPDATE chain_checkpoints SET setl_no = setl_no + 1")
    code, report = verify_with(db_path, "--since-checkpoint")
    assert code == 1
    assert report["since_entry_no"] == 0 and report["entries"] == journal_size(db_path)
    assert any("checkpoint was changed" in p for p in report["checkpoint_problems"])


def test_a_journal_rewritten_under_a_checkpoint_is_a_break(settled, db_path):
    assert verify_with(db_path, "--checkpoint")[0] == 0
    head = journal_size(db_path)
    tamper(db_path, f"UPDATE journal_entries SET hash = '{'f' * 64}' WHERE entry_no = {head}")
    code, report = verify_with(db_path, "--since-checkpoint")
    assert code == 1
    assert any(f"journal's entry {head} hash" in p for p in report["checkpoint_problems"])
    assert report["first_bad_entry"]["entry_no"] == head  # checked again from the first entry


def test_a_settlement_without_its_entry_since_the_checkpoint_is_named(settled, client, bill, db_path):
    assert verify_with(db_path, "--checkpoint")[0] == 0
    settle_more(client, bill)
    with sqlite3.connect(db_path) as conn:
        setl_id, entry_no = conn.execute(
            "SELECT setl_id, entry_no FROM journal_entries ORDER BY entry_no DESC LIMIT 1").fetchone()
    tamper(db_path, f"DELETE FROM journal_entries WHERE entry_no = {entry_no}")
    code, report = verify_with(db_path, "--since-checkpoint")
    assert code == 1 and report["missing_entries"] == [setl_id]


def test_full_verify_names_a_settlement_whose_entry_and_postings_are_gone(settled, db_path):
    """The last entry removed whole leaves a shorter chain that hashes and
    balances: only the settlement row without its entry shows the loss."""
    with sqlite3.connect(db_path) as conn:
        setl_id, entry_no = conn.execute(
            "SELECT setl_id, entry_no FROM journal_entries ORDER BY entry_no DESC LIMIT 1").fetchone()
    tamper(db_path, "DROP TRIGGER IF EXISTS postings_append_only_d", f"DELETE FROM postings WHERE entry_no = {entry_no}")
    tamper(db_path, f"DELETE FROM journal_entries WHERE entry_no = {entry_no}")
    code, report = verify_with(db_path)
    assert code == 1 and report["missing_entries"] == [setl_id], report

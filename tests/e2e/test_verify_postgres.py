"""`medsettle verify` on a PostgreSQL ledger written by real servers (one
hash chain per writer), with and without the checkpoints of each chain:
the tamper tests of tests/e2e/test_verify.py and
tests/e2e/test_verify_checkpoint.py, each naming the first bad entry; a
check since the checkpoints covers only each chain's entries after its own;
a changed checkpoint, or a journal changed under one, is a break and every
entry of every chain is checked again."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clock import FixedClock
from medsettle.ledger.posting.journal import entry_hash
from medsettle.ledger.posting.rules import Posting

from conftest import SETTLE_AT, make_bill, serving_sample
from tests.e2e.test_verify import TRAFFIC

CLOCK = FixedClock(SETTLE_AT)


def verify_with(url: str, *flags: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = CliRunner().invoke(main, ["verify", "--db", url, "--json", *flags])
    return out.exit_code, json.loads(out.stdout)


def query(url: str, sql: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def tamper(url: str, *statements: str) -> None:
    """A change behind the service's back: the append-only triggers off for this session."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            assert conn.execute(statement).rowcount >= 1, statement


def a_server_settles(url: str, tmp_path: Path, rounds: int = 1, reverse: bool = False) -> list[str]:
    """A server of its own (a new chain) settles TRAFFIC `rounds` times; the setl_ids."""
    with serving_sample(url, tmp_path, CLOCK) as client:
        results = [client.settle(make_bill(code=c, psn_no=p, insuplc=i)) for _ in range(rounds) for c, p, i in TRAFFIC]
        if reverse:
            client.reverse("VERIFY-PG-RV-1", results[1].fixmedins_code, results[1].setl_id)
    return [result.setl_id for result in results]


def entries(url: str) -> int:
    return query(url, "SELECT COUNT(*) FROM journal_entries")[0][0]


def entry_of(url: str, setl_id: str, kind: str = "settle") -> int:
    return query(url, "SELECT entry_no FROM journal_entries WHERE setl_id = %s AND kind = %s", setl_id, kind)[0][0]


@pytest.fixture
def two_chains(pg_url: str, tmp_path: Path) -> tuple[str, list[str]]:
    """Two servers, one after the other: two chains; the setl_ids in settling order."""
    ids = a_server_settles(pg_url, tmp_path, rounds=2, reverse=True)
    ids += a_server_settles(pg_url, tmp_path)
    assert query(pg_url, "SELECT COUNT(DISTINCT chain_id) FROM journal_entries")[0][0] == 2
    return pg_url, ids


# ---- the full check: each change named at its first bad entry ---------------
def test_an_intact_ledger_of_two_chains_verifies(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    code, report = verify_with(url)
    assert code == 0, report
    assert report["entries"] == len(ids) + 1 and report["since_checkpoints"] == {}


def test_a_changed_posting_is_the_first_bad_entry(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    changed = entry_of(url, ids[4])
    tamper(url, f"UPDATE postings SET amount_fen = amount_fen + 100 WHERE posting_no = "
                f"(SELECT MIN(posting_no) FROM postings WHERE entry_no = {changed})")
    code, report = verify_with(url)
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == changed and report["first_bad_entry"]["setl_id"] == ids[4]
    assert "hash does not match" in report["first_bad_entry"]["problem"]
    assert any("sums to" in b for b in report["balance_breaks"])


def test_a_rehashed_entry_is_named_and_its_successor_does_not_chain(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    changed = entry_of(url, ids[2])
    row = query(url, "SELECT entry_no, setl_id, kind, setlym, created_us, prev_hash FROM journal_entries "
                     "WHERE entry_no = %s", changed)[0]
    postings = [Posting(b, a, -amount) for b, a, amount in query(
        url, "SELECT book, account, amount_fen FROM postings WHERE entry_no = %s ORDER BY posting_no", changed)]
    forged = entry_hash(row[5], *row[:5], postings)
    tamper(url, f"UPDATE postings SET amount_fen = -amount_fen WHERE entry_no = {changed}",
           f"UPDATE journal_entries SET hash = '{forged}' WHERE entry_no = {changed}")
    code, report = verify_with(url)
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == changed
    assert "settlement" in report["first_bad_entry"]["problem"]
    assert report["bad_entries"] == 2  # and the next entry of its chain does not link to the forged hash


def test_a_removed_entry_breaks_its_chain_at_its_successor(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    removed, successor = entry_of(url, ids[3]), entry_of(url, ids[4])
    tamper(url, f"DELETE FROM journal_entries WHERE entry_no = {removed}")
    code, report = verify_with(url)
    assert code == 1
    assert report["first_bad_entry"]["entry_no"] == successor
    assert "prev_hash" in report["first_bad_entry"]["problem"]
    assert report["orphan_postings"] > 0 and report["missing_entries"] == [ids[3]]


def test_a_changed_settlement_amount_no_longer_matches_its_postings(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    tamper(url, f"UPDATE settlements SET hifp_pay_fen = hifp_pay_fen - 1 WHERE setl_id = '{ids[9]}'")
    code, report = verify_with(url)
    assert code == 1
    assert report["first_bad_entry"]["setl_id"] == ids[9]
    assert "postings differ" in report["first_bad_entry"]["problem"]


# ---- the checkpoints of each chain -------------------------------------------
def test_the_next_check_covers_only_each_chains_entries_since_its_checkpoint(two_chains: tuple[str, list[str]],
                                                                             tmp_path: Path) -> None:
    url, ids = two_chains
    code, first = verify_with(url, "--checkpoint")
    assert code == 0 and first["entries"] == entries(url)
    heads = dict(query(url, "SELECT chain_id, last_entry_no FROM chain_heads WHERE entries > 0"))
    assert {(c["chain"], c["entry_no"]) for c in first["recorded_checkpoints"]} == set(heads.items())
    assert query(url, "SELECT chain_id, entry_no FROM chain_checkpoints ORDER BY chain_id") == sorted(heads.items())

    added = len(a_server_settles(url, tmp_path))  # a third chain, none of its entries checkpointed
    code, since = verify_with(url, "--since-checkpoint", "--checkpoint")
    assert code == 0, since
    assert since["entries"] == added
    assert since["since_checkpoints"] == {str(chain): entry_no for chain, entry_no in heads.items()}
    (recorded,) = since["recorded_checkpoints"]  # only the chain that grew
    assert recorded["chain"] not in heads
    code, nothing_new = verify_with(url, "--since-checkpoint", "--checkpoint")
    assert code == 0 and nothing_new["entries"] == 0 and nothing_new["recorded_checkpoints"] == []
    human = CliRunner().invoke(main, ["verify", "--db", url, "--since-checkpoint"])
    assert human.exit_code == 0 and "after the checkpoints of 3 chain(s)" in human.output


def test_a_change_after_a_checkpoint_is_named_and_no_checkpoint_is_recorded(two_chains: tuple[str, list[str]],
                                                                            tmp_path: Path) -> None:
    url, _ = two_chains
    assert verify_with(url, "--checkpoint")[0] == 0
    later = a_server_settles(url, tmp_path)
    changed = entry_of(url, later[1])
    tamper(url, f"UPDATE postings SET amount_fen = amount_fen + 100 WHERE posting_no = "
                f"(SELECT MIN(posting_no) FROM postings WHERE entry_no = {changed})")
    checkpoints = query(url, "SELECT COUNT(*) FROM chain_checkpoints")[0][0]
    code, report = verify_with(url, "--since-checkpoint", "--checkpoint")
    assert code == 1 and report["entries"] == len(later)
    assert report["first_bad_entry"]["entry_no"] == changed
    assert "hash does not match" in report["first_bad_entry"]["problem"]
    assert report["recorded_checkpoints"] == []
    assert query(url, "SELECT COUNT(*) FROM chain_checkpoints")[0][0] == checkpoints


def test_a_change_before_a_checkpoint_is_left_to_full_verify(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    assert verify_with(url, "--checkpoint")[0] == 0
    changed = entry_of(url, ids[0])
    tamper(url, f"UPDATE postings SET amount_fen = amount_fen + 100 WHERE posting_no = "
                f"(SELECT MIN(posting_no) FROM postings WHERE entry_no = {changed})")
    code, since = verify_with(url, "--since-checkpoint")
    assert code == 0 and since["entries"] == 0  # what the checkpoints vouch for is not reread
    code, full = verify_with(url)
    assert code == 1 and full["first_bad_entry"]["entry_no"] == changed


def test_a_changed_checkpoint_is_a_break_and_every_entry_is_checked(two_chains: tuple[str, list[str]]) -> None:
    url, _ = two_chains
    assert verify_with(url, "--checkpoint")[0] == 0
    tamper(url, "UPDATE chain_checkpoints SET setl_no = setl_no + 1 "
                "WHERE chain_id = (SELECT MAX(chain_id) FROM chain_checkpoints)")
    code, report = verify_with(url, "--since-checkpoint", "--checkpoint")
    assert code == 1
    assert report["since_checkpoints"] == {} and report["entries"] == entries(url)
    assert any("checkpoint was changed" in p for p in report["checkpoint_problems"]), report
    assert report["recorded_checkpoints"] == []


def test_a_checkpoint_moved_to_another_chain_is_a_break(two_chains: tuple[str, list[str]]) -> None:
    url, _ = two_chains
    assert verify_with(url, "--checkpoint")[0] == 0
    tamper(url, "UPDATE chain_checkpoints SET chain_id = chain_id + 100 "
                "WHERE chain_id = (SELECT MIN(chain_id) FROM chain_checkpoints)")
    code, report = verify_with(url, "--since-checkpoint")
    assert code == 1 and report["since_checkpoints"] == {} and report["entries"] == entries(url)
    assert report["checkpoint_problems"], report


def test_a_journal_rewritten_under_a_checkpoint_is_a_break(two_chains: tuple[str, list[str]]) -> None:
    url, ids = two_chains
    assert verify_with(url, "--checkpoint")[0] == 0
    head = entry_of(url, ids[-1])  # the second chain's last entry: its checkpoint's
    tamper(url, f"UPDATE journal_entries SET hash = '{'f' * 64}' WHERE entry_no = {head}")
    code, report = verify_with(url, "--since-checkpoint")
    assert code == 1
    assert any(f"journal's entry {head} hash" in p for p in report["checkpoint_problems"]), report
    assert report["first_bad_entry"]["entry_no"] == head  # checked again from each chain's first entry


def test_a_settlement_without_its_entry_since_the_checkpoint_is_named(two_chains: tuple[str, list[str]],
                                                                      tmp_path: Path) -> None:
    url, _ = two_chains
    assert verify_with(url, "--checkpoint")[0] == 0
    later = a_server_settles(url, tmp_path)
    removed = entry_of(url, later[-1])
    tamper(url, f"DELETE FROM postings WHERE entry_no = {removed}", f"DELETE FROM journal_entries WHERE entry_no = {removed}")
    code, report = verify_with(url, "--since-checkpoint")
    assert code == 1 and report["missing_entries"] == [later[-1]]
    assert "entries at its end were removed" in report["first_bad_entry"]["problem"]  # its chain is cut


def test_a_chain_cut_back_to_its_checkpoint_is_named(two_chains: tuple[str, list[str]], tmp_path: Path) -> None:
    """Entries removed from a chain's end back to its checkpoint leave
    nothing to walk on that chain: its writer's recorded head names the cut."""
    url, _ = two_chains
    with serving_sample(url, tmp_path, CLOCK) as client:  # verified while its server runs, then it goes on
        kept = client.settle(make_bill(msgid="VERIFY-PG-KEPT")).setl_id
        assert verify_with(url, "--checkpoint")[0] == 0
        cut = client.settle(make_bill(msgid="VERIFY-PG-CUT")).setl_id
    (chain, checkpointed), = query(url, "SELECT chain_id, entry_no FROM journal_entries WHERE setl_id = %s", kept)
    assert query(url, "SELECT chain_id FROM journal_entries WHERE setl_id = %s", cut) == [(chain,)]
    removed = entry_of(url, cut)
    tamper(url, f"DELETE FROM postings WHERE entry_no = {removed}", f"DELETE FROM journal_entries WHERE entry_no = {removed}")
    code, report = verify_with(url, "--since-checkpoint")
    assert code == 1 and report["entries"] == 0 and report["missing_entries"] == [cut]
    assert report["since_checkpoints"][str(chain)] == checkpointed
    assert f"chain {chain} ends at entry {checkpointed} but its writer recorded entry {removed}" in \
        report["first_bad_entry"]["problem"], report

"""Verified checkpoints of the journal's hash chain, so that a check of the
journal need not recompute every entry since the first one.

A checkpoint says: at `verified_us`, entry `entry_no` (whose hash was
`entry_hash`) and every entry before it passed every per-entry check of
`medsettle verify` (hash, link to the entry before, balance per book,
postings equal to what the settlement's amounts post), and every settlement
up to `setl_no` had its journal entry. `medsettle verify` records one on
request, `medsettle clear` records one after each clean run.
`verify --since-checkpoint` and clearing then check only the entries after
the newest checkpoint, chaining on from its `entry_hash`. A ledger with one
hash chain per writer (PostgreSQL) keeps one list of checkpoints per chain
(`chain`), recorded by both the same way; `Starts` says where each chain's
check begins (`trusted_starts`), for both and on both backends.

What that trusts, and why it is acceptable:
- the rows up to the checkpoint are not changed afterwards. The tables are
  append-only (triggers), and what changes them behind the service's back is
  still caught: full `medsettle verify` rechecks every entry and names the
  first bad one, and clearing's month-wide aggregates (each book's trial
  balance, the reciprocal pairs, institution totals against payables, and
  the period's postings against what its settlements post, all summed in
  the database) see any change of money in the month being cleared;
- the checkpoints themselves: each row hashes the row before it, and each
  one's `entry_hash` must still be the journal's hash of its entry. So a
  checkpoint removed, changed or inserted between others, or a journal whose
  chain was recomputed over a checkpointed entry, is a break, and the check
  falls back to the whole journal. Someone able to write the file could also
  append a forged checkpoint at the head; they could as well recompute the
  whole chain, which a full verify would not see either: the chain is
  anchored outside the ledger by the hashes that clearing statements print.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from medsettle.ledger.posting.journal import GENESIS_HASH

CHECKPOINT_GENESIS = GENESIS_HASH  # the prev_hash of the first checkpoint


@dataclass(frozen=True, slots=True)
class Checkpoint:
    entry_no: int
    entry_hash: str
    setl_no: int
    verified_us: int
    prev_hash: str
    hash: str
    chain: int = 0  # the hash chain it covers: 0 on SQLite (one chain), a writer's chain_id on PostgreSQL


def checkpoint_hash(prev_hash: str, entry_no: int, entry_hash: str, setl_no: int, verified_us: int,
                    chain: int = 0) -> str:
    """A checkpoint of another chain than 0 hashes its chain too: moved to another chain, it breaks."""
    fields = ["checkpoint", prev_hash, str(entry_no), entry_hash, str(setl_no), str(verified_us)]
    if chain:
        fields.insert(1, f"chain {chain}")
    return hashlib.sha256("|".join(fields).encode()).hexdigest()


def next_checkpoint(previous: Checkpoint | None, entry_no: int, entry_hash: str, setl_no: int,
                    verified_us: int, chain: int = 0) -> Checkpoint:
    """The checkpoint after `previous` (the newest of the same chain, None: the chain has none)."""
    prev_hash = CHECKPOINT_GENESIS if previous is None or previous.entry_no == 0 else previous.hash
    return Checkpoint(entry_no, entry_hash, setl_no, verified_us, prev_hash,
                      checkpoint_hash(prev_hash, entry_no, entry_hash, setl_no, verified_us, chain), chain)


def checkpoint_problems(checkpoints: Sequence[Checkpoint], journal_hash: Callable[[int], str | None]) -> list[str]:
    """What is wrong with the stored checkpoints of one chain (oldest first),
    given the journal's stored hash of an entry of that chain (None: no such
    entry in it)."""
    problems = []
    prev_hash, prev_no = CHECKPOINT_GENESIS, 0
    for cp in checkpoints:
        where = f"checkpoint at entry {cp.entry_no}" + (f" of chain {cp.chain}" if cp.chain else "")
        if cp.prev_hash != prev_hash or cp.entry_no <= prev_no:
            problems.append(f"{where} does not follow the checkpoint before it (one was removed, inserted or changed)")
        if checkpoint_hash(cp.prev_hash, cp.entry_no, cp.entry_hash, cp.setl_no, cp.verified_us, cp.chain) != cp.hash:
            problems.append(f"{where}: its hash does not match its fields (the checkpoint was changed)")
        stored = journal_hash(cp.entry_no)
        if stored != cp.entry_hash:
            problems.append(f"{where}: the journal's entry {cp.entry_no} hash is {stored or '(no such entry)'}, "
                            f"the checkpoint verified {cp.entry_hash} (the journal was changed up to this entry)")
        prev_hash, prev_no = cp.hash, cp.entry_no
    return problems


@dataclass(frozen=True, slots=True)
class Starts:
    """Where a check of the journal begins on each hash chain: after the
    chain's newest trusted checkpoint; a chain without one, at its first
    entry. SQLite has one chain (0); PostgreSQL one per writer."""

    checkpoints: Mapping[int, Checkpoint]  # chain -> its newest trusted checkpoint
    setl_no: int  # every settlement up to this number had its journal entry when that was checked

    def after(self, chain: int) -> tuple[int, str]:
        """(entry number, hash) the chain's check continues from ((0, genesis): its first entry)."""
        checkpoint = self.checkpoints.get(chain)
        return (checkpoint.entry_no, checkpoint.entry_hash) if checkpoint else (0, GENESIS_HASH)

    @property
    def entry_no(self) -> int:
        """The one chain's checkpointed entry (SQLite): entries after it are checked."""
        return self.after(0)[0]


FROM_THE_START = Starts({}, 0)  # no checkpoint trusted: every entry of every chain is checked


def trusted_starts(checkpoints: Sequence[Checkpoint],
                   journal_hash: Callable[[int, int], str | None]) -> tuple[Starts, list[str]]:
    """Where the check of each chain begins, and the problems found in the
    checkpoints: checkpoints sorted by (chain, entry), journal_hash(chain,
    entry_no) the stored hash of that chain's entry. With a problem in any
    chain's checkpoints none is trusted (FROM_THE_START: every entry is
    checked). Settlements are numbered across chains: the newest
    checkpoint's settlement number holds for all. `medsettle verify` and
    clearing both begin here, on one chain (SQLite) or several."""
    by_chain: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        by_chain.setdefault(checkpoint.chain, []).append(checkpoint)
    problems = []
    for chain, own in by_chain.items():
        problems += checkpoint_problems(own, lambda entry_no, chain=chain: journal_hash(chain, entry_no))  # type: ignore[misc]
    if problems or not by_chain:
        return FROM_THE_START, problems
    newest = {chain: own[-1] for chain, own in by_chain.items()}
    return Starts(newest, max(checkpoint.setl_no for checkpoint in newest.values())), problems

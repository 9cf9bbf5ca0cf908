"""Journal entries and their hash chain: each entry commits to the one before,
so a posting changed behind the service's back breaks the chain."""

from __future__ import annotations

from hashlib import sha256
from typing import Iterable

from medsettle.ledger.posting.rules import Posting

GENESIS_HASH = "0" * 64


def entry_hash(prev_hash: str, entry_no: int, setl_id: str, kind: str, setlym: str, created_us: int,
               postings: Iterable[Posting]) -> str:
    """SHA-256 over the previous hash and the entry's canonical text."""
    return entry_hash_of_lines(prev_hash, entry_no, setl_id, kind, setlym, created_us,
                               [(p.book, p.account, p.amount_fen) for p in postings])


def entry_hash_of_lines(
    prev_hash: str,
    entry_no: int,
    setl_id: str,
    kind: str,
    setlym: str,
    created_us: int,
    lines: Iterable[tuple[str, str, int]],
) -> str:
    """entry_hash of the postings as (book, account, amount_fen) tuples (the writer's form)."""
    body = ";".join([f"{book},{account},{amount}" for book, account, amount in lines])
    return sha256(f"{prev_hash}|{entry_no}|{setl_id}|{kind}|{setlym}|{created_us}|{body}".encode()).hexdigest()

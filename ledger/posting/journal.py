"""Journal entries and their hash chain: each entry commits to the one before,
so a posting changed behind the service's back breaks the chain."""

from __future__ import annotations

import hashlib
from typing import Iterable

from medsettle.ledger.posting.rules import Posting

GENESIS_HASH = "0" * 64


def entry_hash(
    prev_hash: str,
    entry_no: int,
    setl_id: str,
    kind: str,
    setlym: str,
    created_us: int,
    postings: Iterable[Posting],
) -> str:
    """SHA-256 over the previous hash and the entry's canonical text."""
    text = "|".join((prev_hash, str(entry_no), setl_id, kind, setlym, str(created_us)))
    body = ";".join(f"{p.book},{p.account},{p.amount_fen}" for p in postings)
    return hashlib.sha256(f"{text}|{body}".encode()).hexdigest()

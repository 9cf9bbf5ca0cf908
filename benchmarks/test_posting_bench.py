"""The posting builder: a settlement's postings and its hash-chain entry."""

from __future__ import annotations

from medsettle.ledger.posting.journal import GENESIS_HASH, entry_hash
from medsettle.ledger.posting.rules import settlement_postings, unbalanced_books


def _post(insuplc: str, mdtrtarea: str) -> tuple[list, str]:
    postings = settlement_postings(insuplc, mdtrtarea, "H44030100001", 5_100, 1_200)
    return postings, entry_hash(GENESIS_HASH, 1, "S000000000001", "settle", "2026-10", 1_760_495_400_000_000, postings)


def test_post_local_settlement(benchmark):
    postings, digest = benchmark(_post, "440300", "440300")
    assert len(postings) == 3 and not unbalanced_books(postings) and len(digest) == 64


def test_post_cross_region_settlement(benchmark):
    postings, digest = benchmark(_post, "440100", "440300")
    assert len(postings) == 5 and not unbalanced_books(postings) and len(digest) == 64

"""The credential check on the hot path: SHA-256 of the bearer token and a
dict lookup, with the table of 1,000 credentials already in memory (a dict lookup
does not grow with the table). Includes one event-loop round trip."""

from __future__ import annotations

import asyncio
import datetime as dt

from medsettle.ledger.storage.credentials import CredentialStore, Role
from medsettle.server.auth import CredentialCache

AT = dt.datetime(2026, 10, 15, tzinfo=dt.timezone.utc)


def test_token_check_with_1000_credentials(benchmark, tmp_path):
    db = tmp_path / "credentials.db"
    with CredentialStore(db) as store:
        tokens = [store.issue(Role.INSTITUTION, f"H{n:011d}", "bench", AT)[1] for n in range(1_000)]
    cache = CredentialCache(db, ttl_s=3600.0)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cache.reload())

        def one_check() -> object:
            return loop.run_until_complete(cache.principal(tokens[500]))

        principal = benchmark(one_check)
    finally:
        loop.close()
    assert principal.fixmedins_code == "H00000000500"  # type: ignore[attr-defined]

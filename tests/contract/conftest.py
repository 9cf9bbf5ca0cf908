"""The `ledger_store` fixture: a fresh, empty ledger on each backend, opened
through the storage port only. A backend joins the contract by adding a
parameter here; every test in this folder then runs against it too."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import LedgerStore


def _sqlite_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "contract.db")


# backend name -> a function giving a fresh, empty ledger's --db value
LEDGER_URLS: dict[str, Callable[[Path, pytest.FixtureRequest], str]] = {
    "sqlite": _sqlite_url,
}


@pytest.fixture(params=sorted(LEDGER_URLS))
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger's --db value (a file path or a URL)."""
    return LEDGER_URLS[request.param](tmp_path, request)


@pytest.fixture
def ledger_store(ledger_db: str) -> Iterator[LedgerStore]:
    store = open_ledger(ledger_db)
    yield store
    store.close()

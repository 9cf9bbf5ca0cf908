"""A released schema step never changes: existing ledgers were made by it,
and `db upgrade` runs only the steps after a ledger's version, so a changed
step would leave ledgers made before and after the change with different
schemas under one version number. A change to the schema is a new step.
Each released step's text is pinned here by its SHA-256 (a new step is
pinned once it is released)."""

from __future__ import annotations

import hashlib

import pytest

from medsettle.ledger.storage import migrations

RELEASED = {
    ("postgres", 1, "ledger"): "3e1775a21664a7fdcb1e711a9daf5d7207c358c337a6b2f730ee26a4a621be08",
    ("postgres", 2, "chain_checkpoints"): "344f0e437e3e5c71ab91cd695be005dff5c498b5913035e014b17673b78ebbdc",
    ("postgres", 3, "visit_lines_and_pharmacist"): "20fab10e899accafa94c50a029ba4750acc384d47e03490a8d9499b9a2522cd6",
    ("postgres", 4, "settlements_by_time"): "2bf384340fd88f5c90599f0d0e3cea1a609eb9b25f5b30a97b2982e5b0dd2b37",
    ("sqlite", 1, "ledger"): "3f6ea9c5527136aa8685a99f0290982c60cb47920ac66226c99fc3715edbedb7",
    ("sqlite", 2, "clearing_checkpoints"): "3e77e6a24ec02ebca01d1bf86f591f6e76adfa6ab8037625bfd1ca595c29fdff",
    ("sqlite", 3, "visit_lines_and_pharmacist"): "20fab10e899accafa94c50a029ba4750acc384d47e03490a8d9499b9a2522cd6",
    ("sqlite", 4, "period_index_in_entry_order"): "a63d55ea33c50e51d8871b66033a88ab02eaeee30dae7f212fa6282284560c3a",
    ("sqlite", 5, "settlements_by_time"): "2bf384340fd88f5c90599f0d0e3cea1a609eb9b25f5b30a97b2982e5b0dd2b37",
}


@pytest.mark.parametrize("backend", sorted(migrations.BACKENDS))
def test_every_released_step_is_there_with_its_text_unchanged(backend: str) -> None:
    found = {(backend, step.version, step.name): hashlib.sha256(step.sql.encode()).hexdigest()
             for step in migrations.steps(backend)}
    released = {key: digest for key, digest in RELEASED.items() if key[0] == backend}
    assert {key: found.get(key) for key in released} == released, (
        "a released schema step was changed, renamed or removed: existing ledgers were made by it; "
        "change the schema with a new step")

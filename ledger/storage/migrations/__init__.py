"""The ledger's schema, versioned, for each backend.

`sqlite/NNNN_name.sql` and `postgres/NNNN_name.sql` are the steps; a
database's version is the highest step recorded in its `schema_version`
table. The rules (docs/postgresql.md, "Schema versions"):

- opening a database for writing creates the schema in an EMPTY database
  (no ledger tables yet), at the current version;
- an SQLite ledger from before versioning (ledger tables, no
  `schema_version`) is version 1, which is exactly its layout: a writable
  open records that in place, nothing else changes;
- any other older schema is never migrated implicitly: the command refuses
  and tells the operator to run `medsettle db upgrade --db ...`;
- a schema newer than this program knows is never touched: refused.

Each step runs in one transaction with its `schema_version` row, so a step
is applied whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from importlib import resources

BACKENDS = ("sqlite", "postgres")
_STEP_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
VERSION_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    name: str
    sql: str


class SchemaVersionError(Exception):
    """The database's schema is not the one this program runs on (the message says what to do)."""


def steps(backend: str) -> list[Step]:
    """The backend's steps in version order (1, 2, ... without gaps)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    folder = resources.files(__name__).joinpath(backend)
    found = []
    for item in folder.iterdir():
        match = _STEP_NAME.match(item.name)
        if match:
            found.append(Step(int(match[1]), match[2], item.read_text("utf-8")))
    found.sort(key=lambda step: step.version)
    assert [s.version for s in found] == list(range(1, len(found) + 1)), f"{backend} migrations must be 1..N"
    return found


def current_version(backend: str) -> int:
    return len(steps(backend))


def pending(backend: str, found: int) -> list[Step]:
    """The steps that bring a database at version `found` to the current one."""
    return [step for step in steps(backend) if step.version > found]


def check(backend: str, found: int, db_label: str) -> None:
    """Raises SchemaVersionError unless `found` is the current version."""
    current = current_version(backend)
    if found == current:
        return
    if found > current:
        raise SchemaVersionError(
            f"the ledger at {db_label} has schema version {found}, newer than this medsettle knows "
            f"(version {current}): refusing to touch it; run the medsettle release that wrote it or a newer one")
    raise SchemaVersionError(
        f"the ledger at {db_label} has schema version {found}, this medsettle needs version {current}: "
        f"back it up, then run `medsettle db upgrade --db {db_label}`")


def now_us() -> int:
    delta = dt.datetime.now(dt.timezone.utc) - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

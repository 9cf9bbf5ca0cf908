"""Caller credentials on the ledger database: random bearer tokens stored as
their SHA-256 only. A token is 32 random bytes, so a plain hash is enough (no
password stretching needed); it is printed once, when issued, and never again.

Rotation without restart: issue the new credential, switch the caller over,
revoke the old one; the server reloads this table (server/auth.py)."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from medsettle.ledger.storage.fence import refuse_if_fenced
from medsettle.ledger.storage.sqlite import connect, connect_read_only, from_us, init_schema, to_us
from medsettle.ledger.settlement.validation import CODE

TOKEN_PREFIX = "mst_"  # recognisable in a secret scanner, never in logs
TOKEN_BYTES = 32
MAX_LABEL = 100


class Role(enum.Enum):
    INSTITUTION = "institution"  # settles, reverses, reads and reconciles for its own code only
    OPERATOR = "operator"  # an agency operator: reads across institutions, settles nothing


@dataclass(frozen=True, slots=True)
class Credential:
    cred_id: int
    role: Role
    fixmedins_code: str  # "" for operators
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class CredentialError(ValueError):
    """An issue or revoke request that cannot be carried out (message names the field)."""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


class CredentialStore:
    """The credentials table. Short-lived: open, act, close."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """read_only: for listing; the file is never changed (see connect_read_only).
        path: a SQLite file, or a postgresql:// URL (the same SQL runs there)."""
        from medsettle.ledger.storage.backends import is_postgres

        if is_postgres(path):
            from medsettle.ledger.storage.postgres import connect_qmark

            self._conn = connect_qmark(str(path), read_only=read_only)
        elif read_only:
            self._conn = connect_read_only(path)
        else:
            refuse_if_fenced(path)  # ledger/storage/fence.py: no writer on a fenced file
            self._conn = connect(path)
            init_schema(self._conn, str(path))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CredentialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def issue(self, role: Role, fixmedins_code: str, label: str, now: dt.datetime) -> tuple[Credential, str]:
        """A new credential and its token; only the token's hash is stored."""
        if role is Role.INSTITUTION and not CODE.match(fixmedins_code):
            raise CredentialError(f"fixmedins_code: must be an institution code of 1-30 characters, got {fixmedins_code[:40]!r}")
        if role is Role.OPERATOR and fixmedins_code:
            raise CredentialError("fixmedins_code: an operator credential is not bound to an institution")
        if not 1 <= len(label) <= MAX_LABEL:
            raise CredentialError(f"label: must be 1-{MAX_LABEL} characters")
        token = new_token()
        cred_id = self._conn.execute(
            "INSERT INTO credentials (token_sha256, role, fixmedins_code, label, created_us) VALUES (?, ?, ?, ?, ?) "
            "RETURNING cred_id",
            (token_sha256(token), role.value, fixmedins_code, label, to_us(now)),
        ).fetchone()[0]
        return Credential(cred_id, role, fixmedins_code, label, now, None), token

    def revoke(self, cred_id: int, now: dt.datetime) -> Credential:
        updated = self._conn.execute(
            "UPDATE credentials SET revoked_us = ? WHERE cred_id = ? AND revoked_us IS NULL", (to_us(now), cred_id)
        ).rowcount
        found = self.get(cred_id)
        if found is None:
            raise CredentialError(f"cred_id: no credential {cred_id}")
        if not updated:
            assert found.revoked_at is not None
            raise CredentialError(f"cred_id: credential {cred_id} was already revoked at {found.revoked_at.isoformat()}")
        return found

    def get(self, cred_id: int) -> Credential | None:
        row = self._conn.execute(f"{_SELECT} WHERE cred_id = ?", (cred_id,)).fetchone()
        return _credential(row) if row else None

    def list(self, include_revoked: bool = False) -> list[Credential]:
        where = "" if include_revoked else " WHERE revoked_us IS NULL"
        return [_credential(row) for row in self._conn.execute(f"{_SELECT}{where} ORDER BY cred_id")]

    def active_by_hash(self, digest: str | None = None) -> dict[str, Credential]:
        """Every live credential by its token hash (what the server checks a
        call against), or only the one with this hash (an indexed read)."""
        where, args = ("AND token_sha256 = ?", (digest,)) if digest is not None else ("", ())
        rows = self._conn.execute(
            f"SELECT token_sha256, {_COLUMNS} FROM credentials WHERE revoked_us IS NULL {where}", args)
        return {row[0]: _credential(row[1:]) for row in rows}

    def provision(self, codes: Iterable[str], label: str, now: dt.datetime) -> Provisioned:
        """One institution credential per code and one operator credential.
        For demos, tests and first setup."""
        provisioned = Provisioned({}, "", [])
        for code in codes:
            credential, provisioned.tokens[code] = self.issue(Role.INSTITUTION, code, label, now)
            provisioned.cred_ids.append(credential.cred_id)
        credential, provisioned.operator_token = self.issue(Role.OPERATOR, "", label, now)
        provisioned.cred_ids.append(credential.cred_id)
        return provisioned


@dataclass(slots=True)
class Provisioned:
    tokens: dict[str, str]  # fixmedins_code -> token
    operator_token: str
    cred_ids: list[int]


_COLUMNS = "cred_id, role, fixmedins_code, label, created_us, revoked_us"
_SELECT = f"SELECT {_COLUMNS} FROM credentials"


def _credential(row: tuple[object, ...]) -> Credential:
    cred_id, role, code, label, created_us, revoked_us = row
    return Credential(
        int(cred_id), Role(role), str(code), str(label), from_us(int(created_us)),  # type: ignore[call-overload]
        None if revoked_us is None else from_us(int(revoked_us)),  # type: ignore[call-overload]
    )

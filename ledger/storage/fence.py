"""A SQLite ledger fenced after a failed fsync of its WAL.

After a failed fsync Linux may have marked the pages it could not write
clean: they stay in the page cache, readable, until evicted, and are never
written. A writer started again on the file (a replacement writer process,
or `medsettle serve` restarted on the same machine) would read those
commits as stored and answer their callers' retries as settled, though
they may never reach the disk. So a failed sync fences the ledger (as
PostgreSQL's data_sync_retry=off panics): the writer is not restarted, and
a marker file beside the ledger (`<db>-fenced`) makes every later `serve`
on it refuse to open it, until the operator has dropped the page cache
(reboot, or unmount and mount), checked the ledger (`medsettle verify`)
and cleared the marker (`medsettle db unfence`): docs/operations.md.

The marker is written durably (a file of its own, synced, renamed into
place, its directory synced): a fence that a power loss forgot would let
the next start trust what the failed sync lost. It records the boot it was
written in, so that `unfence` can tell whether a reboot has dropped the
page cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from medsettle.ledger.storage.port import StorageError
from medsettle.ledger.storage.sync_path import sync_path

MARKER_SUFFIX = "-fenced"
RUNBOOK = "docs/operations.md#a-failed-fsync-fences-the-ledger"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: a new value at each boot


class LedgerFenced(StorageError):
    """The ledger is fenced: a writer must not open it (the message says why and what to do)."""


def marker_path(db_path: str | Path) -> Path:
    # beside the file SQLite opens: it resolves a symlink, so every name of the ledger has the one marker
    return Path(f"{os.path.realpath(db_path)}{MARKER_SUFFIX}")


def boot_id() -> str:
    """This boot's identity ("" where the system does not say)."""
    try:
        return _BOOT_ID.read_text("ascii").strip()
    except OSError:
        return ""


def fence(db_path: str | Path, why: str) -> Path:
    """Writes the marker durably (OSError if the disk refuses: the marker is
    then in place if it could be created, not durable; the caller still stops
    writing). An existing marker is kept: the first cause stays."""
    marker = marker_path(db_path)
    if marker.exists():
        return marker
    record = {"why": why, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid(),
              "boot_id": boot_id(), "runbook": RUNBOOK}
    partial = marker.with_name(marker.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.write(fd, (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:  # in place even if not durable (or not whole): it still fences this boot, whose page cache lies
        os.replace(partial, marker)
    sync_path(marker.parent)
    return marker


def fenced(db_path: str | Path) -> dict[str, Any] | None:
    """The marker's record if the ledger is fenced, else None (a marker that
    cannot be parsed still fences: its why says so)."""
    marker = marker_path(db_path)
    try:
        text = marker.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        if isinstance(record, dict):
            return record
    except ValueError:
        pass
    return {"why": f"(unreadable marker: {text[:200]!r})"}


def refusal(db_path: str | Path, why: str) -> str:
    """What a refused writer says: the cause, the marker, the runbook."""
    return (f"the ledger is fenced: {why}. Writes stay refused until an operator follows {RUNBOOK}: check the "
            "disk and the kernel log, reboot (or unmount and mount) so the page cache is dropped, run "
            f"`medsettle verify`, then `medsettle db unfence --db {db_path}` removes {marker_path(db_path)}")


def write_refusal(why: str) -> str:
    """What a write refused on a fenced ledger says to its caller (short: a status message is bounded)."""
    return (f"the ledger is fenced: {why}; this server takes no writes until its operator follows {RUNBOOK} "
            "(health: NOT_SERVING). Retry with the same msgid once it serves again")


def refuse_if_fenced(db_path: str | Path) -> None:
    """Raises LedgerFenced if the SQLite ledger at db_path carries a marker."""
    record = fenced(db_path)
    if record is not None:
        raise LedgerFenced(refusal(db_path, str(record.get("why", "a failed fsync of the WAL"))))


def unfence(db_path: str | Path) -> dict[str, Any] | None:
    """Removes the marker (durably); the record it held, or None if there was none."""
    record = fenced(db_path)
    if record is None:
        return None
    marker = marker_path(db_path)
    marker.unlink()
    sync_path(marker.parent)
    return record

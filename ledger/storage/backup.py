"""Online backup of a SQLite ledger that a server may be writing to
(`medsettle backup`), with SQLite's backup API (Connection.backup).

Consistent: the copy is the ledger as of one committed transaction. The
source is read in a read transaction held over every step, so each step
copies pages of the same WAL snapshot; a writer goes on committing
meanwhile (WAL readers never block it) and, since the backup reads a
snapshot, SQLite does not restart it however often the server commits.
Stepwise (`pages_per_step`), so progress can be shown.

Self-contained and whole: the copy is written next to its destination as
FILE.partial, switched from WAL to a rollback journal (one file, no -wal
to carry along), checked with PRAGMA quick_check, fsynced, and only then
linked as FILE. An existing file is never overwritten nor removed: FILE
is put in place with a hard link, which fails if FILE appeared meanwhile,
and FILE.partial is created only if it does not exist (another backup
may be writing it, or it may be the very ledger)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from medsettle.ledger.posting.journal import GENESIS_HASH
from medsettle.ledger.progress import NO_PROGRESS, Hooks
from medsettle.ledger.storage.sqlite import connect_read_only
from medsettle.ledger.storage.sync_path import sync_path

PAGES_PER_STEP = 1_024  # 4 MiB of 4 KiB pages a step


class BackupRefused(Exception):
    """The backup cannot be made as asked (the message names the option)."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    pages: int
    page_size: int
    last_entry_no: int  # the journal's head in the copy: the copy is the ledger as of this entry
    head_hash: str

    @property
    def bytes(self) -> int:
        return self.pages * self.page_size


def backup_ledger(db_path: str | Path, out_path: str | Path, hooks: Hooks = NO_PROGRESS,
                  pages_per_step: int = PAGES_PER_STEP) -> BackupResult:
    """Copies the ledger at db_path to out_path (which must not exist).
    hooks hear of the pages to copy and of those copied. NotALedgerError if
    db_path holds no ledger; BackupRefused for an unusable out_path."""
    out = Path(out_path)
    if out.exists():
        raise BackupRefused(f"--out: {out} exists; a backup never overwrites a file")
    if not out.parent.is_dir():
        raise BackupRefused(f"--out: no folder {out.parent}")
    partial = out.with_name(out.name + ".partial")
    source = connect_read_only(db_path)
    try:
        _create_new(partial)
        try:
            result = _copy(source, partial, hooks, pages_per_step)
            sync_path(partial)
            _put_in_place(partial, out)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, FileExistsError):
                raise BackupRefused(f"--out: {out} exists (it appeared during the backup); "
                                    "a backup never overwrites a file") from None
            raise
    finally:
        source.close()
    sync_path(out.parent)  # the new name is durable
    return BackupResult(out, *result)


def _put_in_place(partial: Path, out: Path) -> None:
    """partial renamed to out, never over a file there (FileExistsError):
    a hard link, which fails if out exists; on a file system without hard
    links (some network and FAT ones), a rename after a last look."""
    try:
        os.link(partial, out)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(out):
            raise FileExistsError(out) from None
        os.rename(partial, out)
        return
    partial.unlink()


def _create_new(partial: Path) -> None:
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise BackupRefused(f"--out: {partial} exists: another backup is writing it, or one was stopped "
                            "before it ended (then remove it)") from None


def _copy(source: sqlite3.Connection, partial: Path, hooks: Hooks,
          pages_per_step: int) -> tuple[int, int, int, str]:
    source.execute("BEGIN")
    source.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # takes the snapshot every step reads
    page_size = int(source.execute("PRAGMA page_size").fetchone()[0])
    copied = [-1]  # pages reported so far; -1: none yet

    def progress(status: int, remaining: int, total: int) -> None:
        if copied[0] < 0:
            hooks.start(total)
            copied[0] = 0
        hooks.advance(total - remaining - copied[0])
        copied[0] = total - remaining

    target = sqlite3.connect(partial, isolation_level=None)
    try:
        source.backup(target, pages=pages_per_step, progress=progress, sleep=0)
        source.execute("COMMIT")
        target.execute("PRAGMA journal_mode = DELETE")
        problems = [row[0] for row in target.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"the copy fails quick_check: {'; '.join(problems[:3])}")
        pages = int(target.execute("PRAGMA page_count").fetchone()[0])
        head = target.execute("SELECT entry_no, hash FROM journal_entries ORDER BY entry_no DESC LIMIT 1").fetchone()
    finally:
        target.close()
    entry_no, head_hash = head if head is not None else (0, GENESIS_HASH)
    return pages, page_size, int(entry_no), str(head_hash)



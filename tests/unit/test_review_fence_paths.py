"""A fenced SQLite ledger (ledger/storage/fence.py) takes no writer by any
path: not `serve` only, but every command that opens it writable (a
clearing run, reference data, agreements, credentials, a schema upgrade),
and not through another name of the same file (a symlink: SQLite itself
resolves it, and keeps its -wal beside the file it resolves to, which is
the file the writer process must fsync)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clearing.store import ClearingStore
from medsettle.ledger.storage.credentials import CredentialStore
from medsettle.ledger.storage.fence import LedgerFenced, fence, fenced, refuse_if_fenced, unfence
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.wal_sync import SYNC_FAILED_EXIT, pipelined_wal

# A commit left in the WAL, as a writer process that stopped leaves it
# (os._exit: no close, so no checkpoint copies it into the file).
_COMMIT_AND_STOP = """
import os, sys
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
store = SqliteLedgerStore(sys.argv[1])
store.writer_connection().execute("PRAGMA wal_autocheckpoint = 0")
store.begin()
store.writer_connection().execute("CREATE TABLE review_probe (x)")
store.commit()
os._exit(0)
"""


def _ledger_with_a_commit_in_its_wal(db: Path) -> None:
    SqliteLedgerStore(db).close()
    subprocess.run([sys.executable, "-c", _COMMIT_AND_STOP, str(db)], check=True)
    assert Path(f"{db}-wal").stat().st_size > 0


def _files(db: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (db, Path(f"{db}-wal"))}


def test_no_writer_of_any_command_opens_a_fenced_ledger_and_its_files_stay_as_they_were(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    _ledger_with_a_commit_in_its_wal(db)
    fence(db, "the fsync of its WAL failed (test)")
    before = _files(db)

    for open_writable in (SqliteLedgerStore, ClearingStore, CredentialStore):
        with pytest.raises(LedgerFenced, match="the ledger is fenced"):
            open_writable(db)
    runner = CliRunner()
    reference = tmp_path / "reference.json"
    reference.write_text("{}")
    for args in (["db", "upgrade", "--db", str(db)], ["load-reference", "--db", str(db), str(reference)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "the ledger is fenced" in result.output, (args, result.output)
    assert _files(db) == before  # no checkpoint copied the WAL, nothing was written

    reader = SqliteLedgerStore(db, read_only=True)  # the runbook's `verify` still reads it
    assert reader.reader().execute("SELECT count(*) FROM review_probe").fetchone() == (0,)
    reader.close()


def test_a_symlink_to_the_ledger_is_the_same_ledger_for_its_fence(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "ledger.db"
    link = tmp_path / "ledger.db"
    os.symlink(real, link)
    SqliteLedgerStore(real).close()

    fence(link, "the fsync of its WAL failed (test)")
    assert fenced(real) is not None
    with pytest.raises(LedgerFenced):
        refuse_if_fenced(real)
    assert unfence(real) is not None
    assert fenced(link) is None

    fence(real, "the fsync of its WAL failed (test)")
    with pytest.raises(LedgerFenced):
        refuse_if_fenced(link)


def test_the_writer_process_syncs_the_wal_of_a_ledger_opened_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "ledger.db"
    link = tmp_path / "ledger.db"
    os.symlink(real, link)
    store = SqliteLedgerStore(link)
    wal = pipelined_wal(store)
    assert wal is not None
    store.begin()
    store.writer_connection().execute("CREATE TABLE review_probe (x)")
    store.commit()
    assert Path(f"{real}-wal").stat().st_size > 0  # SQLite wrote the commit beside the file the link names
    wal.sync()
    assert (wal.opened, wal.syncs) == (1, 1)  # that WAL was fsynced: none of it may be answered before
    wal.close()
    store.close()


def test_a_marker_the_disk_would_not_sync_or_take_whole_still_fences_this_boot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A failing disk is when the fence is written: its fsync (or write) may fail too.
    def failing(*_: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    db = tmp_path / "ledger.db"
    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", failing)
        with pytest.raises(OSError):
            fence(db, "the fsync of its WAL failed (test)")
    record = fenced(db)
    assert record is not None and record["why"] == "the fsync of its WAL failed (test)"

    other = tmp_path / "other.db"
    with monkeypatch.context() as patched:
        patched.setattr(os, "write", failing)
        with pytest.raises(OSError):
            fence(other, "the fsync of its WAL failed (test)")
    with pytest.raises(LedgerFenced):  # not whole (empty): it fences all the same
        refuse_if_fenced(other)


_STOP_FENCED = """
import errno, sys
from medsettle.ledger.storage.wal_sync import stop_fenced
stop_fenced(sys.argv[1])(OSError(errno.EIO, "Input/output error"))
"""


def test_the_writer_process_stops_after_a_failed_sync_even_with_its_stderr_broken(tmp_path: Path) -> None:
    # Its stderr is the server's: a pipe to a log shipper that died raises at the print.
    db = tmp_path / "ledger.db"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        stopped = subprocess.run([sys.executable, "-c", _STOP_FENCED, str(db)], stderr=write_end, timeout=60)
    finally:
        os.close(write_end)
    assert stopped.returncode == SYNC_FAILED_EXIT
    assert fenced(db) is not None


def test_unfence_given_a_postgresql_url_never_shows_its_password() -> None:
    url = "postgresql://medsettle:s3cret-pass@127.0.0.1:1/medsettle"
    result = CliRunner().invoke(main, ["db", "unfence", "--db", url])
    assert result.exit_code == 0, result.output
    assert "s3cret-pass" not in result.output and "PostgreSQL" in result.output


def test_unfence_of_a_marker_that_does_not_name_its_boot_asks_for_the_remount(tmp_path: Path) -> None:
    # As fence() leaves it when the failing disk took no bytes: it may be of this very boot.
    db = tmp_path / "ledger.db"
    marker = Path(f"{db}-fenced")
    marker.write_bytes(b"")
    runner = CliRunner()
    same_boot = runner.invoke(main, ["db", "unfence", "--db", str(db)])
    assert same_boot.exit_code == 1 and "--after-remount" in same_boot.output and marker.exists()
    cleared = runner.invoke(main, ["db", "unfence", "--db", str(db), "--after-remount"])
    assert cleared.exit_code == 0 and not marker.exists(), cleared.output

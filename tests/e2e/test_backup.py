"""`medsettle backup` of a ledger that a real server process writes to
while the copy is made: the copy is consistent (verify passes, its journal
is a prefix of the live one), a server runs on it once restored, and a
backup never overwrites a file or creates a ledger."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.client.settlement_client import SettlementClient
from medsettle.ledger.progress import Hooks
from medsettle.ledger.storage.backup import BackupRefused, backup_ledger
from tests.conftest import ServeProcess, issue_token, make_bill

HOSPITAL = "H44010100001"


def journal_head(db: Path) -> tuple[int, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT entry_no, hash FROM journal_entries ORDER BY entry_no DESC LIMIT 1").fetchone()
    finally:
        conn.close()


def hash_of_entry(db: Path, entry_no: int) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT hash FROM journal_entries WHERE entry_no = ?", (entry_no,)).fetchone()[0]
    finally:
        conn.close()


class Settling(threading.Thread):
    """Settles bills one after another until stopped, as a hospital would."""

    def __init__(self, target: str, token: str) -> None:
        super().__init__(daemon=True)
        self.target, self.token = target, token
        self.stop = threading.Event()
        self.settled = 0

    def run(self) -> None:
        with SettlementClient(self.target, token=self.token, deadline_s=10.0, retries=0) as client:
            while not self.stop.is_set():
                client.settle(make_bill(lines=[("S0001", 1, 100 + self.settled % 900)]))
                self.settled += 1


def test_a_backup_taken_while_the_server_writes_is_consistent_and_serves_once_restored(tmp_path):
    db = tmp_path / "live" / "ledger.db"
    db.parent.mkdir()
    token = issue_token(db, HOSPITAL)
    server = ServeProcess(db, tmp_path / "live", "--clock", "2026-10-15T10:30:00+08:00").start()
    writer = Settling(server.target, token)
    try:
        with SettlementClient(server.target, token=token, deadline_s=30.0, retries=0) as client:
            list(client.settle_stream([make_bill() for _ in range(300)]))  # a ledger of some hundred pages
        writer.start()
        heads_seen: list[int] = []  # the live journal's head at each step of the copy
        copied: list[int] = []  # pages each step copied

        def step(done: int) -> None:
            copied.append(done)
            heads_seen.append(journal_head(db)[0])
            writer_progress = writer.settled
            while writer.settled == writer_progress and writer.is_alive():  # a commit lands between two steps
                threading.Event().wait(0.005)

        copy = tmp_path / "backup" / "ledger-copy.db"
        copy.parent.mkdir()
        result = backup_ledger(db, copy, Hooks(advance=step), pages_per_step=16)
        cli_copy = tmp_path / "backup" / "cli-copy.db"
        done = CliRunner().invoke(main, ["backup", "--db", str(db), "--out", str(cli_copy)])
        assert done.exit_code == 0, done.output
        assert f"backed up {db} to {cli_copy}" in done.output
    finally:
        writer.stop.set()
        writer.join(30)
        assert server.stop() == 0

    assert len(heads_seen) > 5 and heads_seen[-1] > heads_seen[0]  # the server committed during the copy
    # one snapshot throughout: no step started the copy over (as SQLite does when the source changes under it)
    assert min(copied) > 0 and sum(copied) == result.pages
    assert not copy.with_name(copy.name + ".partial").exists()
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    assert result.pages > 100 and result.last_entry_no >= 300
    assert hash_of_entry(db, result.last_entry_no) == result.head_hash  # the copy is the live journal up to its head
    for copied in (copy, cli_copy):
        verified = CliRunner().invoke(main, ["verify", "--db", str(copied)])
        assert verified.exit_code == 0, verified.output
        assert "the hash chain is intact" in verified.output

    # restored: a server runs on the copy and settles on from its head
    restored = tmp_path / "restored" / "ledger.db"
    restored.parent.mkdir()
    restored.write_bytes(copy.read_bytes())
    again = ServeProcess(restored, restored.parent, "--clock", "2026-10-16T10:30:00+08:00").start()
    try:
        with SettlementClient(again.target, token=token, deadline_s=10.0, retries=0) as client:
            client.settle(make_bill())
    finally:
        assert again.stop() == 0
    assert journal_head(restored)[0] == result.last_entry_no + 1
    assert CliRunner().invoke(main, ["verify", "--db", str(restored)]).exit_code == 0


def test_a_backup_refuses_to_overwrite_and_names_what_is_wrong(tmp_path):
    db = tmp_path / "ledger.db"
    issue_token(db, HOSPITAL)
    existing = tmp_path / "taken.db"
    existing.write_bytes(b"keep me")
    runner = CliRunner()
    refused = runner.invoke(main, ["backup", "--db", str(db), "--out", str(existing)])
    assert refused.exit_code == 1 and f"--out: {existing} exists" in refused.output
    assert existing.read_bytes() == b"keep me"
    no_folder = runner.invoke(main, ["backup", "--db", str(db), "--out", str(tmp_path / "none" / "b.db")])
    assert no_folder.exit_code == 1 and "--out: no folder" in no_folder.output
    missing = runner.invoke(main, ["backup", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "b.db")])
    assert missing.exit_code == 1 and f"no database at {tmp_path / 'missing.db'}" in missing.output
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "b.db").exists()
    url = runner.invoke(main, ["backup", "--db", "postgresql://localhost/medsettle", "--out", str(tmp_path / "b.db")])
    assert url.exit_code == 2 and "pg_dump" in url.output


def test_a_backup_never_removes_or_overwrites_a_file_it_did_not_make(tmp_path):
    db = tmp_path / "ledger.db.partial"  # a ledger whose name is another backup's work file
    issue_token(db, HOSPITAL)
    ledger = db.read_bytes()
    refused = CliRunner().invoke(main, ["backup", "--db", str(db), "--out", str(tmp_path / "ledger.db")])
    assert refused.exit_code == 1 and f"--out: {db} exists: another backup is writing it" in refused.output
    assert db.read_bytes() == ledger and not (tmp_path / "ledger.db").exists()

    # a file that appears at --out while the copy is made (another backup, an operator) is kept
    out = tmp_path / "copy.db"

    def someone_writes_out(done: int) -> None:
        if not out.exists():
            out.write_bytes(b"keep me")

    with pytest.raises(BackupRefused, match="appeared during the backup"):
        backup_ledger(db, out, Hooks(advance=someone_writes_out), pages_per_step=1)
    assert out.read_bytes() == b"keep me" and not out.with_name("copy.db.partial").exists()


def test_a_backup_is_put_in_place_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    db = tmp_path / "ledger.db"
    issue_token(db, HOSPITAL)

    def no_hard_links(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # as a FAT or some network file systems answer

    monkeypatch.setattr("medsettle.ledger.storage.backup.os.link", no_hard_links)
    result = backup_ledger(db, tmp_path / "copy.db")
    assert result.path.exists() and not (tmp_path / "copy.db.partial").exists()
    assert CliRunner().invoke(main, ["verify", "--db", str(result.path)]).exit_code == 0
    with pytest.raises(BackupRefused, match="exists"):
        backup_ledger(db, tmp_path / "copy.db")

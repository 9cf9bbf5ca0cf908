"""The commands that only read the ledger (`verify`, `balances`,
`audit-flags`, `quotas`, `export-daily`, `credentials list`, `backup`) open it read
only: a missing file, an empty one or another application's SQLite file is a
one-line refusal naming --db (exit 1) and stays byte for byte as it was (it
used to get the whole schema written and be reported as a balanced ledger);
a medsettle database is read unchanged, also while another connection is
writing to it. `clear`, which writes, refuses such a file before opening it
read-write; `clear --dry-run` opens it read only. And `get` refuses to ask
for nothing (or for two things)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.storage.credentials import CredentialStore, Role
from medsettle.ledger.storage.sqlite import NotALedgerError, connect, connect_read_only

from conftest import SETTLE_AT, make_bill


def read_only_commands(tmp_path: Path) -> dict[str, list[str]]:
    return {
        "verify": ["verify"],
        "balances": ["balances"],
        "audit-flags": ["audit-flags", "--date", "2026-10-15"],
        "quotas": ["quotas"],
        "export-daily": ["export-daily", "--date", "2026-10-15", "--clock", "2026-10-16T09:00:00+08:00",
                         "--out", str(tmp_path / "export")],
        "credentials list": ["credentials", "list"],
        "backup": ["backup", "--out", str(tmp_path / "backup.db")],
    }


def test_every_read_only_command_is_in_the_list():
    """The commands whose --db help says read only are the ones tested here."""
    commands = [(name, c) for name, c in main.commands.items() if not isinstance(c, click.Group)]
    commands += [(f"{group} {name}", c) for group, g in main.commands.items() if isinstance(g, click.Group)
                 for name, c in g.commands.items()]
    said = {name for name, c in commands if any(p.name == "db" and "read only" in (getattr(p, "help", "") or "")
                                                for p in c.params)}
    assert said == set(read_only_commands(Path("x")))


def files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def other_application_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO patients (name) VALUES ('x')")
    conn.commit()
    conn.close()


def not_a_ledger(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """(its folder, a file holding no ledger: empty, or another application's database)."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "not-a-ledger.db"
    if kind == "empty":
        db.write_bytes(b"")
    else:
        other_application_db(db)
    return data, db


@pytest.mark.parametrize("kind", ["empty", "other application's"])
@pytest.mark.parametrize("name", list(read_only_commands(Path("x"))))
def test_a_file_without_a_ledger_is_refused_and_left_as_it_was(tmp_path, name, kind):
    data, db = not_a_ledger(tmp_path, kind)
    before = files_in(data)
    done = CliRunner().invoke(main, [*read_only_commands(tmp_path)[name], "--db", str(db)])
    assert done.exit_code == 1, done.output
    assert done.output == f"Error: --db: {db} is not a medsettle database (no journal_entries table)\n"
    assert files_in(data) == before  # the same bytes, no -wal, -shm or -journal beside it
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("name", list(read_only_commands(Path("x"))))
def test_a_missing_file_is_refused_and_not_created(tmp_path, name):
    db = tmp_path / "none.db"
    done = CliRunner().invoke(main, [*read_only_commands(tmp_path)[name], "--db", str(db)])
    assert done.exit_code == 1 and done.output == f"Error: --db: no database at {db}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_ledger_is_read_and_its_file_not_changed(server, client, db_path, tmp_path):
    client.settle(make_bill(msgid="RO-1"))
    server.stop()
    before = db_path.read_bytes()
    for name, args in read_only_commands(tmp_path).items():
        done = CliRunner().invoke(main, [*args, "--db", str(db_path)])
        assert done.exit_code == 0, (name, done.output)
        assert db_path.read_bytes() == before, name
    assert "hash chain is intact" in CliRunner().invoke(main, ["verify", "--db", str(db_path)]).output


def test_clear_dry_run_opens_the_ledger_read_only(server, client, db_path, tmp_path):
    """A dry run changes nothing, not even the schema: a ledger written by an
    older version (here: from before schema versions, one index missing) is
    refused, naming the upgrade, and left as it was; `db upgrade` brings its
    layout up to date and the real run clears it."""
    client.settle(make_bill(msgid="RO-DRY"))
    server.stop()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP INDEX settlements_by_period")
    conn.execute("DROP TABLE schema_version")
    for column in ("line_facts", "pharmacist_id"):  # what schema step 3 adds: not in a ledger of that age
        conn.execute(f"ALTER TABLE visit_log DROP COLUMN {column}")
    conn.commit()
    conn.close()

    def has_index() -> bool:
        with contextlib.closing(sqlite3.connect(db_path)) as reader:
            return reader.execute("SELECT 1 FROM sqlite_master WHERE name = 'settlements_by_period'").fetchone() is not None

    before = db_path.read_bytes()
    args = ["clear", "--province", "44", "--period", "2026-10", "--db", str(db_path),
            "--clock", "2026-11-02T09:00:00+08:00", "--statement-dir", str(tmp_path / "statements")]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 1 and "medsettle db upgrade" in dry.output, dry.output
    assert db_path.read_bytes() == before and not has_index()
    assert not (tmp_path / "statements").exists()
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--db", str(db_path)])
    assert upgraded.exit_code == 0, upgraded.output
    assert CliRunner().invoke(main, [*args, "--dry-run"]).exit_code == 0
    cleared = CliRunner().invoke(main, args)
    assert cleared.exit_code == 0, cleared.output
    assert has_index()


def test_clear_dry_run_reads_a_ledger_from_before_clearing_existed(server, client, db_path, tmp_path):
    """No clearing_runs table (a ledger no medsettle with clearing has opened
    to write): read only, the dry run takes it as never cleared and adds nothing."""
    client.settle(make_bill(msgid="RO-OLD"))
    server.stop()
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute("DROP TABLE clearing_runs")
    before = db_path.read_bytes()
    dry = CliRunner().invoke(main, ["clear", "--province", "44", "--period", "2026-10", "--db", str(db_path),
                                    "--clock", "2026-11-02T09:00:00+08:00", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Dry run" in dry.output and "reconciles" in dry.output
    assert db_path.read_bytes() == before


def test_a_ledger_is_readable_while_another_connection_writes(server, client, db_path):
    client.settle(make_bill(msgid="RO-2"))
    writer = connect(db_path)
    try:
        writer.execute("BEGIN IMMEDIATE")  # as the server's writer holds it during a batch
        writer.execute("INSERT INTO credentials (token_sha256, role, fixmedins_code, label, created_us) "
                       "VALUES ('x', 'operator', '', 'not-committed-yet', 0)")
        assert Path(f"{db_path}-wal").exists()
        listed = CliRunner().invoke(main, ["credentials", "list", "--db", str(db_path)])
        assert listed.exit_code == 0 and "tests" in listed.output and "not-committed-yet" not in listed.output
        verified = CliRunner().invoke(main, ["verify", "--db", str(db_path)])
        assert verified.exit_code == 0 and "hash chain is intact" in verified.output, verified.output
        balanced = CliRunner().invoke(main, ["balances", "--db", str(db_path)])
        assert balanced.exit_code == 0 and "payable:institution:H44010100001" in balanced.output
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_read_only_connection_cannot_write(db_path):
    with CredentialStore(db_path) as store:
        store.issue(Role.OPERATOR, "", "ops", SETTLE_AT)
    conn = connect_read_only(db_path)
    try:
        assert conn.execute("SELECT label FROM credentials").fetchall() == [("ops",)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM credentials")
    finally:
        conn.close()
    with pytest.raises(NotALedgerError, match="no database at"):
        connect_read_only(db_path.with_name("none.db"))


@pytest.mark.parametrize("which", [[], ["--setl-id", "S000000000001", "--msgid", "M1"]])
def test_get_needs_exactly_one_of_setl_id_and_msgid_before_any_call(monkeypatch, which):
    def no_server(*_: object) -> None:
        raise AssertionError("get contacted a server")

    monkeypatch.setattr("medsettle.cli._client", no_server)
    done = CliRunner().invoke(main, ["get", "--code", "H44010100001", "--target", "127.0.0.1:1", *which])
    assert done.exit_code == 2, done.output
    assert "give exactly one of --setl-id and --msgid" in done.output


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
@pytest.mark.parametrize("kind", ["empty", "other application's"])
def test_clear_refuses_a_file_without_a_ledger_before_writing_into_it(tmp_path, kind, dry_run):
    """`clear` writes, so it opens the ledger read-write; a file that holds no
    ledger is refused first (it used to get the schema and "clear" an empty month)."""
    data, db = not_a_ledger(tmp_path, kind)
    before = files_in(data)
    args = ["clear", "--province", "44", "--period", "2026-10", "--db", str(db),
            "--statement-dir", str(tmp_path / "statements"), *dry_run]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 1, done.output
    assert done.output == f"Error: --db: {db} is not a medsettle database (no journal_entries table)\n"
    assert files_in(data) == before
    assert not (tmp_path / "statements").exists()

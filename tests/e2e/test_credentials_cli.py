"""`medsettle credentials issue|list|revoke` the way the README shows them:
the token alone on stdout (so `TOKEN=$(medsettle credentials issue ...)`
works), only its hash stored, and the token used by the hospital-side
commands against a real server. Revocation reaching a running server is
tests/service/test_auth.py."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clock import SystemClock
from medsettle.ledger.service import open_reference
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

HOSPITAL = "H44010100001"


def ledger(path) -> str:  # type: ignore[no-untyped-def]
    """A ledger at path, with the shipped reference data, as a first `serve` leaves it."""
    store = SqliteLedgerStore(path)
    try:
        open_reference(store, SystemClock())
    finally:
        store.close()
    return str(path)


def credentials(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["credentials", *args])


def stored_rows(db: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return repr(conn.execute("SELECT * FROM credentials").fetchall())
    finally:
        conn.close()


def test_issue_prints_the_token_alone_and_stores_only_its_hash(tmp_path):
    db = ledger(tmp_path / "ledger.db")
    issued = credentials("issue", "--db", db, "--code", HOSPITAL, "--label", "his-2026")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert len(issued.stdout.splitlines()) == 1 and token.startswith("mst_") and " " not in token
    assert issued.stderr.startswith(f"issued credential 1 (institution {HOSPITAL}, his-2026)") and token not in issued.stderr
    operator = credentials("issue", "--db", db, "--role", "operator", "--label", "agency-ops")
    assert operator.exit_code == 0 and "(operator, agency-ops)" in operator.stderr
    rows = stored_rows(db)
    assert token not in rows and operator.stdout.strip() not in rows
    assert hashlib.sha256(token.encode()).hexdigest() in rows


def test_issue_refuses_an_institution_without_code_and_an_operator_with_one(tmp_path):
    db = ledger(tmp_path / "ledger.db")
    no_code = credentials("issue", "--db", db, "--label", "x")
    assert no_code.exit_code == 2 and "fixmedins_code" in no_code.output
    bound = credentials("issue", "--db", db, "--role", "operator", "--code", HOSPITAL, "--label", "x")
    assert bound.exit_code == 2 and "not bound to an institution" in bound.output
    assert stored_rows(db) == "[]"  # nothing issued


def test_list_never_shows_tokens_and_revoked_ones_only_with_all(tmp_path):
    db = ledger(tmp_path / "ledger.db")
    first = credentials("issue", "--db", db, "--code", HOSPITAL, "--label", "his-2026").stdout.strip()
    second = credentials("issue", "--db", db, "--code", HOSPITAL, "--label", "his-2027").stdout.strip()
    revoked = credentials("revoke", "--db", db, "1")
    assert revoked.exit_code == 0 and revoked.output == "revoked credential 1 (his-2026)\n"
    active = credentials("list", "--db", db)
    assert active.exit_code == 0 and "his-2027" in active.output and "his-2026" not in active.output
    every = credentials("list", "--db", db, "--all")
    row = next(line for line in every.output.splitlines() if "his-2026" in line)
    assert row.split("│")[6].strip().startswith("20")  # its revocation time
    assert first not in every.output + active.output and second not in every.output + active.output
    again = credentials("revoke", "--db", db, "1")
    assert again.exit_code == 1 and "already revoked" in again.output
    unknown = credentials("revoke", "--db", db, "99")
    assert unknown.exit_code == 1
    for command in (["revoke", "1"], ["list"], ["issue", "--code", HOSPITAL, "--label", "x"],
                    ["issue", "--role", "operator", "--label", "x"]):
        missing = credentials(*command, "--db", str(tmp_path / "none.db"))
        assert missing.exit_code == 1 and "no database" in missing.output
        assert not (tmp_path / "none.db").exists()


def test_issue_refuses_a_path_without_a_ledger_naming_it_and_creates_nothing(tmp_path):
    for missing in (tmp_path / "none.db", tmp_path / "no-folder" / "ledger.db"):
        refused = credentials("issue", "--db", str(missing), "--code", HOSPITAL, "--label", "x")
        assert refused.exit_code == 1 and f"no database at {missing}" in refused.output, refused.output
        assert not missing.exists()
    assert not (tmp_path / "no-folder").exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    refused = credentials("issue", "--db", str(empty), "--role", "operator", "--label", "x")
    assert refused.exit_code == 1 and "is not a medsettle database" in refused.output
    assert empty.read_bytes() == b""


def test_issue_refuses_a_code_unknown_to_the_reference_data_naming_it(tmp_path):
    db = ledger(tmp_path / "ledger.db")
    unknown = credentials("issue", "--db", db, "--code", "H99999999999", "--label", "x")
    assert unknown.exit_code == 2 and "--code" in unknown.output and "'H99999999999' is no institution" in unknown.output
    operator = credentials("issue", "--db", db, "--role", "operator", "--label", "ops")  # an operator needs no code
    assert operator.exit_code == 0, operator.output
    assert stored_rows(db).count("'operator'") == 1 and "H99999999999" not in stored_rows(db)


def test_an_issued_token_acts_for_its_institution_and_an_operators_reads_only(server, tmp_path):
    db = str(server.db_path)
    token = credentials("issue", "--db", db, "--code", HOSPITAL, "--label", "his").stdout.strip()
    operator = credentials("issue", "--db", db, "--role", "operator", "--label", "ops").stdout.strip()
    bill = tmp_path / "bill.json"
    bill.write_text(json.dumps({
        "msgid": "CRED-1", "fixmedins_code": HOSPITAL, "psn_no": "44010000000000000001",
        "insutype": "INSUTYPE_EMPLOYEE_BASIC", "insuplc_admdvs": "440100", "visit_type": "VISIT_TYPE_OUTPATIENT",
        "acct_used_flag": True, "fee_lines": [{"feedetl_sn": "1", "hilist_code": "XB0202", "cnt": 1, "pric_fen": 452}],
    }))
    target = ["--target", server.target]
    refused = CliRunner().invoke(main, ["settle", *target, "--token", operator, str(bill)])
    assert refused.exit_code == 1 and "PERMISSION_DENIED" in refused.output
    settled = CliRunner().invoke(main, ["settle", *target, "--token", token, str(bill)])
    assert settled.exit_code == 0, settled.output
    setl_id = json.loads(settled.output)["setl_id"]
    read = CliRunner().invoke(main, ["get", *target, "--token", operator, "--code", HOSPITAL, "--setl-id", setl_id])
    assert read.exit_code == 0 and json.loads(read.output)["msgid"] == "CRED-1"
    nobody = CliRunner().invoke(main, ["get", *target, "--token", "mst_unknown", "--code", HOSPITAL, "--setl-id", setl_id])
    assert nobody.exit_code == 1 and "UNAUTHENTICATED" in nobody.output

"""`medsettle clear` end to end: a month of traffic produced through the real
gRPC server on a real SQLite file, cleared through the CLI while the server
keeps running; the statement is checked against the settlement results the
service returned, independently of the clearing code."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clearing.store import ClearingStore
from medsettle.ledger.clock import CHINA_TZ
from medsettle.v1 import settlement_pb2 as pb

OCT_CLEARING_CLOCK = "2026-11-02T09:00:00+08:00"
NOV_CLEARING_CLOCK = "2026-12-01T09:00:00+08:00"

# (institution, person, insurance place, insutype): local, in-province and cross-province traffic
VISITS = [
    ("H44010100001", "44010000000000000001", "440100", 310),  # local, Guangzhou
    ("H44010100002", "44010000000000000002", "440100", 390),  # local, resident insurance
    ("H44010100001", "44030000000000000001", "440300", 310),  # Shenzhen insured, treated in Guangzhou
    ("H44030100001", "44060000000000000001", "440600", 310),  # Foshan insured, treated in Shenzhen
    ("H44060100001", "44010000000000000001", "440100", 310),  # Guangzhou insured, treated in Foshan
    ("H44010100002", "13010000000000000001", "130100", 310),  # Hebei insured, treated in Guangzhou
    ("H44030100001", "31010000000000000001", "310100", 310),  # Shanghai insured, treated in Shenzhen
    ("H13010100001", "44030000000000000001", "440300", 310),  # Shenzhen insured, treated in Hebei
    ("H31010100001", "44060000000000000001", "440600", 310),  # Foshan insured, treated in Shanghai
]


def settle_month(client, bill, rounds: int = 2, first_round: int = 0) -> list[pb.SettleResult]:
    results = []
    for n in range(first_round, first_round + rounds):
        for i, (code, psn_no, insuplc, insutype) in enumerate(VISITS):
            # prices differ per visit so that no two flows cancel by accident
            lines = [("S0001", 1, 2500 + 100 * n + 37 * i), ("XB0201", 2, 3500), ("XC0401", 1, 1200)]
            results.append(client.settle(bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype, lines=lines)))
    return results


def reverse(client, result: pb.SettleResult, msgid: str) -> pb.SettleResult:
    return client.reverse(msgid, result.fixmedins_code, result.setl_id)


def owed_fen(r: pb.SettleResult) -> int:
    return r.hifp_pay_fen + r.acct_pay_fen


def expected_positions(results: list[pb.SettleResult], province: str) -> dict[str, int]:
    """Net positions computed from the service's answers alone."""
    def party(admdvs: str) -> str:
        return admdvs if admdvs[:2] == province else f"province:{admdvs[:2]}"

    positions: dict[str, int] = defaultdict(int)
    for r in results:
        if r.insuplc_admdvs == r.mdtrtarea_admvs or province not in (r.insuplc_admdvs[:2], r.mdtrtarea_admvs[:2]):
            continue
        positions[party(r.mdtrtarea_admvs)] += owed_fen(r)
        positions[party(r.insuplc_admdvs)] -= owed_fen(r)
    return {p: n for p, n in positions.items() if n}


DECLARED_HEADER = "fixmedins_code,clr_type,setl_cnt,medfee_sumamt_fen,fund_pay_sumamt_fen,acct_pay_fen,psn_cash_pay_fen\n"


def declared_totals(results: list[pb.SettleResult]) -> dict[tuple[str, int], list[int]]:
    """What each institution of province 44 would declare (3201): its platform totals per clr_type."""
    totals: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in results:
        if r.mdtrtarea_admvs.startswith("44"):
            row = totals[(r.fixmedins_code, int(r.clr_type))]
            for i, value in enumerate((1, r.medfee_sumamt_fen, r.fund_pay_sumamt_fen, r.acct_pay_fen, r.psn_cash_pay_fen)):
                row[i] += value
    return totals


def clear(db: Path, period: str, clock: str, out: Path, *extra: str):
    return CliRunner().invoke(main, ["clear", "--province", "44", "--period", period, "--db", str(db),
                                     "--clock", clock, "--statement-dir", str(out), *extra])


def journal_size(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT COUNT(*) FROM journal_entries").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM postings").fetchone()[0])


def province_agency_balances(db: Path, period: str) -> dict[tuple[str, str], int]:
    store = ClearingStore(db)
    try:
        balances = store.book_balances(period)
    finally:
        store.close()
    return {(book, account): amount for (book, account), amount in balances.items()
            if book.startswith("44") and account.startswith(("receivable:agency:", "payable:agency:"))}


def test_a_month_of_traffic_clears_to_the_fen_once_and_a_reversal_after_clearing_clears_next_month(server, client, clock, bill, db_path, tmp_path):
    october = settle_month(client, bill)
    october.append(reverse(client, october[2], "REV-OCT-1"))  # an in-month reversal, in-province pair
    assert all(r.setlym == "2026-10" for r in october)

    clock.set(dt.datetime(2026, 11, 3, 11, 0, tzinfo=CHINA_TZ))
    november = settle_month(client, bill, rounds=1, first_round=5)

    # November has not ended on the clearing clock: refused, nothing posted
    before = journal_size(db_path)
    early = clear(db_path, "2026-11", OCT_CLEARING_CLOCK, tmp_path / "early")
    assert early.exit_code == 1 and "has not ended" in early.output
    assert journal_size(db_path) == before

    out = tmp_path / "oct"
    first = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out, "--json")
    assert first.exit_code == 0, first.output
    statement = json.loads(first.stdout)
    assert statement["period"] == "2026-10" and statement["clearing_entry"]["entry_no"] > 0

    # reconciles to the fen with what the service answered
    here = [r for r in october if r.mdtrtarea_admvs.startswith("44")]
    assert statement["totals"]["setl_cnt"] == len(here)
    assert statement["totals"]["medfee_sumamt_fen"] == sum(r.medfee_sumamt_fen for r in here)
    assert statement["totals"]["fund_pay_sumamt_fen"] == sum(r.fund_pay_sumamt_fen for r in here)
    assert statement["totals"]["payable_fen"] == sum(owed_fen(r) for r in here)
    per_institution: dict[str, int] = defaultdict(int)
    for r in here:
        per_institution[r.fixmedins_code] += owed_fen(r)
    assert {i["fixmedins_code"]: i["payable_fen"] for i in statement["institutions"]} == per_institution
    positions = {p["party"]: p["net_fen"] for p in statement["positions"] if p["net_fen"]}
    assert positions == expected_positions(october, "44")
    assert sum(p["net_fen"] for p in statement["positions"]) == 0
    assert {"province:13", "province:31"} <= positions.keys()  # one counterpart per other province
    instructions = {(i["payer"], i["payee"]): i["amount_fen"] for i in statement["payment_instructions"]}
    assert instructions[("440100", "H44010100002")] == per_institution["H44010100002"]

    # the period's reciprocal balances of every agency of the province are zero; every book balances
    assert not any(province_agency_balances(db_path, "2026-10").values())
    balanced = CliRunner().invoke(main, ["balances", "--db", str(db_path), "--period", "2026-10"])
    assert balanced.exit_code == 0, balanced.output

    # a reversal after October was cleared: Hebei insured at Guangzhou; it belongs to November
    late = reverse(client, october[5], "REV-LATE-1")
    november.append(late)
    assert late.setlym == "2026-11" and late.orig_setl_id == october[5].setl_id

    # a re-run prints and writes the same statement, byte for byte, and posts nothing
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(files) == {"statement.json", "statement.csv", "payment_instructions.csv", "statement.html"}
    after_first = journal_size(db_path)
    again = clear(db_path, "2026-10", "2026-11-20T09:00:00+08:00", out, "--json")
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    assert journal_size(db_path) == after_first
    table_again = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out)
    assert "already cleared" in table_again.output and "province:13" in table_again.stdout

    # November: the late reversal is picked up, with November's own traffic
    nov = clear(db_path, "2026-11", NOV_CLEARING_CLOCK, tmp_path / "nov", "--json")
    assert nov.exit_code == 0, nov.output
    nov_positions = {p["party"]: p["net_fen"] for p in json.loads(nov.stdout)["positions"] if p["net_fen"]}
    assert nov_positions == expected_positions(november, "44")
    reciprocal = {(b["treatment"], b["insurance"]): b["amount_fen"] for b in json.loads(nov.stdout)["reciprocal"]}
    later_same_pair = sum(owed_fen(r) for r in november[:-1] if (r.mdtrtarea_admvs, r.insuplc_admdvs) == ("440100", "130100"))
    assert later_same_pair != owed_fen(october[5])
    assert reciprocal[("440100", "130100")] == later_same_pair - owed_fen(october[5])
    assert not any(province_agency_balances(db_path, "2026-11").values())


def test_a_posting_changed_behind_the_services_back_is_a_break_and_nothing_is_posted(server, client, bill, db_path, tmp_path):
    results = settle_month(client, bill, rounds=1)
    target = results[2]  # Shenzhen insured at Guangzhou: a cross-region settlement
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER postings_append_only_u")
        changed = conn.execute(
            "UPDATE postings SET amount_fen = amount_fen + 100 WHERE rowid = (SELECT p.rowid FROM postings p "
            "JOIN journal_entries j ON j.entry_no = p.entry_no WHERE j.setl_id = ? AND p.account = ?)",
            (target.setl_id, "receivable:agency:440300"),
        ).rowcount
    assert changed == 1
    before = journal_size(db_path)
    out = tmp_path / "breaks"
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out)
    assert done.exit_code == 3, done.output
    report = json.loads((out / "breaks.json").read_text())
    kinds = report["counts"]
    assert {"journal_entry", "trial_balance", "reciprocity"} <= kinds.keys() and kinds["journal_entry"] == 1
    entry_break = next(b for b in report["breaks"] if b["kind"] == "journal_entry")
    assert target.setl_id in entry_break["where"] and entry_break["amount_fen"] == 100
    assert "hash does not match" in entry_break["detail"]
    assert "440100 receivable:agency:440300 off by 100 fen" in entry_break["detail"]
    reciprocity = next(b for b in report["breaks"] if b["kind"] == "reciprocity")
    assert reciprocity["where"] == "440100<->440300" and reciprocity["amount_fen"] == 100
    assert not (out / "statement.json").exists()
    assert journal_size(db_path) == before
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM clearing_runs").fetchone()[0] == 0
    assert "nothing was posted" in done.output
    dry_out = tmp_path / "dry-breaks"
    dry = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, dry_out, "--dry-run")
    assert dry.exit_code == 3 and "Dry run: no report written" in dry.output
    assert not dry_out.exists()  # a dry run shows the breaks, writes no report


def test_a_posting_moved_to_another_period_is_a_break(server, client, bill, db_path, tmp_path):
    results = settle_month(client, bill, rounds=1)
    with sqlite3.connect(db_path) as conn:  # the entry's hash does not cover a posting's period
        conn.execute("DROP TRIGGER postings_append_only_u")
        conn.execute("UPDATE postings SET setlym = '2026-09' WHERE rowid = (SELECT p.rowid FROM postings p JOIN "
                     "journal_entries j ON j.entry_no = p.entry_no WHERE j.setl_id = ? AND p.account = ?)",
                     (results[0].setl_id, "payable:institution:H44010100001"))
    out = tmp_path / "moved"
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out)
    assert done.exit_code == 3, done.output
    report = json.loads((out / "breaks.json").read_text())
    moved = next(b for b in report["breaks"] if b["kind"] == "posting_period")
    assert moved["where"] == "440100 payable:institution:H44010100001"
    assert moved["amount_fen"] == owed_fen(results[0])  # the credit left October: its balance is that much higher


def test_a_deleted_journal_entry_is_a_break(server, client, bill, db_path, tmp_path):
    results = settle_month(client, bill, rounds=1)
    gone = results[3]
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER journal_append_only_d")
        assert conn.execute("DELETE FROM journal_entries WHERE setl_id = ?", (gone.setl_id,)).rowcount == 1
    out = tmp_path / "deleted"
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out)
    assert done.exit_code == 3, done.output
    report = json.loads((out / "breaks.json").read_text())
    assert [b["where"] for b in report["breaks"] if b["kind"] == "missing_entry"] == [gone.setl_id]
    next_entry = next(b for b in report["breaks"] if b["kind"] == "journal_entry")
    assert results[4].setl_id in next_entry["where"] and "prev_hash" in next_entry["detail"]


def test_dry_run_shows_the_clearing_entry_and_posts_nothing(server, client, bill, db_path, tmp_path):
    settle_month(client, bill, rounds=1)
    before = journal_size(db_path)
    out = tmp_path / "dry"
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out, "--dry-run")
    assert done.exit_code == 0, done.output
    assert "Dry run" in done.output and "clearing:province:44" in done.stdout
    assert "receivable:agency:440300" in done.stdout
    assert journal_size(db_path) == before and not out.exists()


def test_a_dry_run_of_a_cleared_month_shows_its_statement_and_writes_nothing(server, client, bill, db_path, tmp_path):
    settle_month(client, bill, rounds=1)
    cleared = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, tmp_path / "real", "--json")
    assert cleared.exit_code == 0, cleared.output
    out = tmp_path / "dry"
    dry = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert "already cleared" in dry.output and "nothing was posted or written" in dry.output
    assert dry.stdout == cleared.stdout  # the stored statement, byte for byte
    assert not out.exists()


def test_prepaid_funds_are_drawn_and_a_shortfall_is_reported(server, client, bill, db_path, tmp_path):
    results = settle_month(client, bill, rounds=1)
    owes = -expected_positions(results, "44")["440600"]  # Foshan's insured were treated elsewhere
    assert owes > 1
    prepaid_fen = owes // 2
    runner = CliRunner()
    paid = runner.invoke(main, ["prepay", "--province", "44", "--agency", "440600", "--amount-fen", str(prepaid_fen),
                                "--db", str(db_path), "--clock", "2026-10-20T10:00:00+08:00"])
    assert paid.exit_code == 0, paid.output
    refused = runner.invoke(main, ["prepay", "--province", "44", "--agency", "130100", "--amount-fen", "5",
                                   "--db", str(db_path)])
    assert refused.exit_code == 1 and "--agency" in refused.output
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, tmp_path / "s", "--json")
    assert done.exit_code == 0, done.output
    foshan = next(p for p in json.loads(done.stdout)["positions"] if p["party"] == "440600")
    assert foshan["prepaid_available_fen"] == prepaid_fen and foshan["prepaid_drawn_fen"] == prepaid_fen
    assert foshan["shortfall_fen"] == owes - prepaid_fen
    instructions = json.loads(done.stdout)["payment_instructions"]
    assert {"payer": "440600", "payee": "province:44", "amount_fen": owes - prepaid_fen,
            "purpose": "net position"} in instructions
    store = ClearingStore(db_path)
    try:
        assert store.prepaid_balances("44").get("440600") == 0
    finally:
        store.close()
    table = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, tmp_path / "s")
    assert "SHORTFALL" in table.stdout


def test_declared_totals_get_their_result_and_a_difference_stops_the_run(server, client, bill, db_path, tmp_path):
    results = settle_month(client, bill, rounds=1)
    totals = declared_totals(results)
    header = DECLARED_HEADER

    def write(rows: dict[tuple[str, int], list[int]]) -> Path:
        path = tmp_path / "declared.csv"
        path.write_text(header + "".join(f"{c},{t},{','.join(map(str, v))}\n" for (c, t), v in rows.items()))
        return path

    short = dict(totals)
    missing_key = ("H44030100001", 11)
    short[missing_key] = [totals[missing_key][0] - 1, *totals[missing_key][1:]]  # the institution lost a record
    out = tmp_path / "declared-breaks"
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out, "--declared", str(write(short)))
    assert done.exit_code == 3, done.output
    report = json.loads((out / "breaks.json").read_text())
    results_by_code = {(d["fixmedins_code"], d["clr_type"]): d for d in report["declared"]}
    assert results_by_code[missing_key]["stmt_rslt"] == 1  # the platform has more
    listed = {s["setl_id"] for s in results_by_code[missing_key]["platform_settlements"]}
    assert listed == {r.setl_id for r in results if r.fixmedins_code == "H44030100001"}
    assert all(d["stmt_rslt"] == 0 for k, d in results_by_code.items() if k != missing_key)

    bad = tmp_path / "bad.csv"
    bad.write_text(header + "H44010100001,11,1,12x,0,0,0\n")
    refused = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out, "--declared", str(bad))
    assert refused.exit_code == 1 and "line 2: medfee_sumamt_fen" in refused.output

    cleared = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, tmp_path / "ok", "--declared", str(write(totals)), "--json")
    assert cleared.exit_code == 0, cleared.output
    assert {d["stmt_rslt"] for d in json.loads(cleared.stdout)["declared"]} == {0}


@pytest.mark.parametrize("args, message", [
    (["--province", "4", "--period", "2026-10"], "--province"),
    (["--province", "44", "--period", "2026-13"], "--period must be YYYY-MM"),
])
def test_bad_options_are_refused_by_name(db_path, tmp_path, args, message):
    ClearingStore(db_path).close()
    done = CliRunner().invoke(main, ["clear", "--db", str(db_path), "--clock", OCT_CLEARING_CLOCK, *args])
    assert done.exit_code == 1 and message in done.output


def test_each_province_clears_its_side_and_the_counterparts_mirror_each_other(server, client, bill, db_path, tmp_path):
    settle_month(client, bill, rounds=1)
    statements = {}
    for province in ("13", "44", "31"):  # 13 first: 44 must still reconcile its side of the 13 pairs
        done = CliRunner().invoke(main, ["clear", "--province", province, "--period", "2026-10", "--db", str(db_path),
                                         "--clock", OCT_CLEARING_CLOCK, "--statement-dir", str(tmp_path / province),
                                         "--json"])
        assert done.exit_code == 0, done.output
        statements[province] = {p["party"]: p["net_fen"] for p in json.loads(done.stdout)["positions"]}
    assert statements["44"]["province:13"] == -statements["13"]["province:44"] != 0
    assert statements["44"]["province:31"] == -statements["31"]["province:44"] != 0
    store = ClearingStore(db_path)
    try:
        balances = store.book_balances("2026-10")
    finally:
        store.close()
    assert not any(amount for (_, account), amount in balances.items()
                   if account.startswith(("receivable:agency:", "payable:agency:")))
    assert CliRunner().invoke(main, ["balances", "--db", str(db_path), "--period", "2026-10"]).exit_code == 0


def test_clearing_runs_while_the_server_keeps_settling_the_next_month(server, client, clock, bill, db_path, tmp_path):
    import threading

    october = settle_month(client, bill, rounds=2)
    clock.set(dt.datetime(2026, 11, 1, 8, 0, tzinfo=CHINA_TZ))
    stop = threading.Event()
    november: list[pb.SettleResult] = []
    failures: list[BaseException] = []

    def keep_settling() -> None:
        n = 10
        while not stop.is_set():
            try:
                november.extend(settle_month(client, bill, rounds=1, first_round=n))
            except BaseException as error:  # reported below, not swallowed
                failures.append(error)
                return
            n += 1

    feeder = threading.Thread(target=keep_settling)
    feeder.start()
    try:
        while len(november) < 20:
            stop.wait(0.01)
        done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, tmp_path / "oct", "--json")
        settled_during = len(november)
        while len(november) < settled_during + 20 and not failures:
            stop.wait(0.01)
    finally:
        stop.set()
        feeder.join(30)
    assert not failures
    assert done.exit_code == 0, done.output
    assert {p["party"]: p["net_fen"] for p in json.loads(done.stdout)["positions"] if p["net_fen"]} == \
        expected_positions(october, "44")
    assert all(r.setlym == "2026-11" for r in november)
    # the server went on appending after the clearing entry: the chain and the books hold
    balanced = CliRunner().invoke(main, ["balances", "--db", str(db_path)])
    assert balanced.exit_code == 0, balanced.output
    nov = clear(db_path, "2026-11", NOV_CLEARING_CLOCK, tmp_path / "nov", "--json")
    assert nov.exit_code == 0, nov.output
    assert json.loads(nov.stdout)["totals"]["setl_cnt"] == sum(1 for r in november if r.mdtrtarea_admvs.startswith("44"))


def test_an_unreachable_postgresql_ledger_is_refused_with_a_clear_message(tmp_path):
    done = CliRunner().invoke(main, ["clear", "--db", "postgresql://127.0.0.1:1/none", "--province", "44",
                                     "--period", "2026-10", "--clock", OCT_CLEARING_CLOCK,
                                     "--statement-dir", str(tmp_path / "out")])
    assert done.exit_code == 1 and "cannot connect" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "out").exists()

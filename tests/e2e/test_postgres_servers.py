"""Two real `medsettle serve` processes on one PostgreSQL ledger, settling
for the same persons and the same msgids at the same moment: nothing lost,
doubled or out of balance (checked with SQL), and `verify` passes."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.storage.credentials import CredentialStore

from conftest import SETTLE_AT, ServeProcess, make_bill
from pg_checks import ledger_invariant_breaks

CLOCK = "2026-10-15T10:30:00+08:00"
HOT_PERSONS = [  # (institution, person, insurance place, insutype): local and cross-region, few persons, many bills
    ("H44010100001", "44010000000000000001", "440100", 310),
    ("H44010100002", "44010000000000000001", "440100", 310),
    ("H44030100001", "44060000000000000001", "440600", 310),
    ("H44010100002", "13010000000000000001", "130100", 310),
]
BILLS_PER_THREAD = 12
THREADS = 6


def initial_balances() -> dict[str, int]:
    _, persons = parse_document(sample_document())
    return {p.psn_no: p.acct_balc_fen for p in persons}


def start_servers(url: str, tmp_path: Path, count: int = 2, *args: str) -> list[ServeProcess]:
    servers = []
    for i in range(count):
        log_dir = tmp_path / f"server{i}"
        log_dir.mkdir()
        servers.append(ServeProcess(url, log_dir, "--clock", CLOCK, *args).start())  # type: ignore[arg-type]
    return servers


def tokens_for(url: str) -> dict[str, str]:
    codes = sorted({code for code, *_ in HOT_PERSONS})
    with CredentialStore(url) as store:
        return store.provision(codes, "tests", SETTLE_AT).tokens


def verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medsettle", "verify", "--db", url],
                          capture_output=True, text=True, timeout=120)


def test_two_servers_settle_the_same_persons_and_msgids_exactly_once(pg_url: str, tmp_path: Path) -> None:
    servers = start_servers(pg_url, tmp_path)
    tokens = tokens_for(pg_url)
    clients = [SettlementClient(s.target, tokens=tokens, deadline_s=20.0, retries=3) for s in servers]
    answers: dict[str, list[str]] = {}  # msgid -> setl_id answered by each server
    lock = threading.Lock()

    def one_msgid(thread: int, n: int, rng: random.Random) -> None:
        code, psn_no, insuplc, insutype = rng.choice(HOT_PERSONS)
        lines = [("S0001", 1, rng.randint(1_000, 9_000)), ("XB0201", rng.randint(1, 3), 3_500)]
        request = make_bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype, lines=lines,
                            msgid=f"C{thread:02d}{n:04d}")
        # the same request to both servers at once
        with ThreadPoolExecutor(2) as both:
            results = list(both.map(lambda client: client.settle(request), clients))
        with lock:
            answers[request.msgid] = [r.setl_id for r in results]

    def worker(thread: int) -> None:
        rng = random.Random(thread)
        for n in range(BILLS_PER_THREAD):
            one_msgid(thread, n, rng)

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(worker, range(THREADS)))
        # one bill to each server alone: each writes, so each has a chain (above, one may win every race)
        code, psn_no, insuplc, insutype = HOT_PERSONS[0]
        for i, client in enumerate(clients):
            alone = client.settle(make_bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype,
                                            lines=[("S0001", 1, 2_000)], msgid=f"ALONE{i}"))
            answers[f"ALONE{i}"] = [alone.setl_id]
        # both servers answered every msgid with the same settlement
        assert all(len(set(ids)) == 1 for ids in answers.values()), answers
        # another payload under a used msgid is a conflict, on either server
        used = sorted(answers)[0]
        code = _code_of(pg_url, answers[used][0])
        for client in clients:
            with pytest.raises(CallRefused) as refused:
                client.settle(make_bill(code=code, msgid=used, lines=[("S0001", 7, 1234)]))
            assert refused.value.reason == "IDEMPOTENCY_CONFLICT", refused.value
        # one settlement reversed through both servers at once: one reversal, the other ALREADY_REVERSED
        victim = answers[sorted(answers)[1]][0]
        victim_code = _code_of(pg_url, victim)

        def reverse(i: int) -> str:
            try:
                return clients[i].reverse(f"REV{i}", victim_code, victim).setl_id
            except CallRefused as error:
                return error.reason
        with ThreadPoolExecutor(2) as both:
            outcomes = sorted(both.map(reverse, range(2)))
        assert outcomes[0] == "ALREADY_REVERSED" and outcomes[1].startswith("S"), outcomes
    finally:
        for client in clients:
            client.close()
        for server in servers:
            assert server.stop() == 0, server.logs()[-3000:]
    acknowledged = {msgid: ids[0] for msgid, ids in answers.items()}
    assert len(acknowledged) == THREADS * BILLS_PER_THREAD + len(servers)
    assert ledger_invariant_breaks(pg_url, acknowledged, initial_balances()) == []
    checked = verify(pg_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "the hash chain is intact" in checked.stdout
    with psycopg.connect(pg_url) as conn:  # two writers, a chain each
        assert conn.execute("SELECT COUNT(DISTINCT chain_id) FROM journal_entries").fetchone()[0] == 2


def _code_of(url: str, setl_id: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT fixmedins_code FROM settlements WHERE setl_id = %s", (setl_id,)).fetchone()[0]


def test_verify_names_the_first_changed_entry_and_a_cut_chain(pg_url: str, tmp_path: Path) -> None:
    (server,) = start_servers(pg_url, tmp_path, 1)
    tokens = tokens_for(pg_url)
    try:
        with SettlementClient(server.target, tokens=tokens, deadline_s=20.0) as client:
            ids = [client.settle(make_bill(msgid=f"V{i}")).setl_id for i in range(4)]
    finally:
        assert server.stop() == 0
    assert verify(pg_url).returncode == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the last entry removed: no link shows it, the head does
        conn.execute("ALTER TABLE journal_entries DISABLE TRIGGER journal_append_only")
        conn.execute("DELETE FROM journal_entries WHERE setl_id = %s", (ids[3],))
    cut = verify(pg_url)
    assert cut.returncode == 1 and "entries at its end were removed" in cut.stdout, cut.stdout
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE postings DISABLE TRIGGER postings_append_only")
        conn.execute("UPDATE postings SET amount_fen = amount_fen + 1 WHERE posting_no = "
                     "(SELECT MIN(p.posting_no) FROM postings p JOIN journal_entries e ON e.entry_no = p.entry_no "
                     "WHERE e.setl_id = %s)", (ids[1],))
    changed = verify(pg_url)
    first_bad = changed.stdout.split("FIRST BAD ENTRY", 1)[1].splitlines()[0]
    assert changed.returncode == 1 and f"({ids[1]})" in first_bad and "hash does not match" in first_bad

"""Crash durability: `medsettle serve` as a real process under concurrent
load, killed with SIGKILL at random moments, restarted on the same SQLite
file. Proves: every acknowledged settlement and reversal is stored exactly
once with the acknowledged setl_id; every unacknowledged msgid, retried
after the restart, settles exactly once; the journal's hash chain is intact;
every book balances; reciprocal agency accounts match; each person's
account balance equals the sample balance minus what the stored settlements
took from it (no half-written batch).

CI: CRASH_ROUNDS (default 5) kills. Longer:
    CRASH_ROUNDS=50 .venv/bin/python -m pytest tests/crash -m slow -s
CRASH_SEED makes a run repeatable; the figures are printed (-s).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.storage.credentials import CredentialStore
from medsettle.ledger.verify import verify_database

from conftest import SETTLE_AT, ServeProcess, make_bill

CLIENT_THREADS = 8
VISITS = [  # (institution, person, insurance place, insutype): local, in-province, cross-province
    ("H44010100001", "44010000000000000001", "440100", 310),
    ("H44010100002", "44010000000000000002", "440100", 390),
    ("H44010100001", "44030000000000000001", "440300", 310),
    ("H44030100001", "44060000000000000001", "440600", 310),
    ("H44010100002", "13010000000000000001", "130100", 310),
    ("H44030100001", "31010000000000000001", "310100", 310),
    ("H13010100001", "44030000000000000001", "440300", 310),
    ("H31010100001", "13020000000000000001", "130200", 310),
]
# What a killed server's callers see; anything else fails the test.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass
class Ledger:
    """What the clients sent and what the server acknowledged."""

    settles: dict[str, object] = field(default_factory=dict)  # msgid -> SettleRequest
    reversals: dict[str, tuple[str, str]] = field(default_factory=dict)  # msgid -> (code, setl_id reversed)
    acked: dict[str, str] = field(default_factory=dict)  # msgid -> setl_id acknowledged
    unacked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def code_of(self, msgid: str) -> str:
        request = self.settles.get(msgid)
        return request.fixmedins_code if request is not None else self.reversals[msgid][0]  # type: ignore[attr-defined]


def send(client: SettlementClient, ledger: Ledger, msgid: str) -> None:
    """One call; acknowledged or remembered for a retry. Any other refusal fails the test."""
    try:
        if msgid in ledger.settles:
            result = client.settle(ledger.settles[msgid])  # type: ignore[arg-type]
        else:
            code, setl_id = ledger.reversals[msgid]
            result = client.reverse(msgid, code, setl_id)
    except CallRefused as refused:
        assert refused.code in RETRYABLE, f"{msgid}: {refused}"
        with ledger.lock:
            ledger.unacked.add(msgid)
        return
    with ledger.lock:
        ledger.acked[msgid] = result.setl_id
        ledger.unacked.discard(msgid)


def load(target: str, tokens: dict[str, str], ledger: Ledger, rng: random.Random, stop: threading.Event,
         prefix: str) -> None:
    with SettlementClient(target, tokens=tokens, deadline_s=5.0, retries=0) as client:
        mine: list[tuple[str, str]] = []  # (code, setl_id) acknowledged to this thread
        n = 0
        while not stop.is_set():
            n += 1
            msgid = f"{prefix}{n:06d}"
            if mine and rng.random() < 0.1:
                code, setl_id = mine.pop(rng.randrange(len(mine)))
                with ledger.lock:
                    ledger.reversals[msgid] = (code, setl_id)
            else:
                code, psn_no, insuplc, insutype = rng.choice(VISITS)
                lines = [("S0001", 1, rng.randint(1_000, 9_000)), ("XB0201", rng.randint(1, 3), 3_500)]
                with ledger.lock:
                    ledger.settles[msgid] = make_bill(code=code, psn_no=psn_no, insuplc=insuplc, insutype=insutype,
                                                      lines=lines, msgid=msgid)
            send(client, ledger, msgid)
            with ledger.lock:
                setl_id = ledger.acked.get(msgid)
            if setl_id and msgid in ledger.settles:
                mine.append((code, setl_id))
            elif msgid in ledger.unacked:
                time.sleep(0.005)  # the server is gone: do not spin


def retry_unacknowledged(target: str, tokens: dict[str, str], ledger: Ledger) -> int:
    pending = sorted(ledger.unacked)
    with SettlementClient(target, tokens=tokens, deadline_s=10.0, retries=5) as client:
        for msgid in pending:
            send(client, ledger, msgid)
    assert not ledger.unacked, f"retries after a restart must settle: {sorted(ledger.unacked)[:5]}"
    return len(pending)


def writer_child_pid(server_pid: int) -> int:
    """The `--writer-process` child of a server: titled `medsettle: writer`
    (or, in its first instants, still the interpreter that boots it)."""
    for task in os.listdir(f"/proc/{server_pid}/task"):
        with open(f"/proc/{server_pid}/task/{task}/children", encoding="ascii") as children:
            for pid in map(int, children.read().split()):
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    command = cmdline.read()
                    if command.startswith(b"medsettle: writer") or b"child_process import _main" in command:
                        return pid
    raise AssertionError("no writer process")


def run_crash_rounds(tmp_path: Path, rounds: int, seed: int, victim: str = "server") -> dict[str, int]:
    """victim: "server" (SIGKILL `medsettle serve --writer-thread`, restart it), "server+writer"
    (the same with --writer-process), or "writer" (SIGKILL only the writer
    process of a --writer-process server, which starts a new one)."""
    rng = random.Random(seed)
    db = tmp_path / "ledger.db"
    with CredentialStore(db) as store:
        tokens = store.provision(sorted({code for code, *_ in VISITS}), "crash-test", SETTLE_AT).tokens
    extra = ("--writer-process",) if victim in ("server+writer", "writer") else ("--writer-thread",)
    server = ServeProcess(db, tmp_path, "--clock", SETTLE_AT.isoformat(), *extra)
    ledger = Ledger()
    figures = defaultdict(int)
    for round_no in range(1, rounds + 1):
        if victim != "writer" or round_no == 1:
            server.start()
        figures["retried_after_restart"] += retry_unacknowledged(server.target, tokens, ledger)
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(server.target, tokens, ledger, random.Random(rng.random()),
                                                       stop, f"R{round_no:03d}T{t}N"))
                   for t in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.3, 1.5))  # a random moment under load
        if victim == "writer":
            os.kill(writer_child_pid(server.process.pid), signal.SIGKILL)  # type: ignore[union-attr]
            time.sleep(rng.uniform(0.0, 0.5))  # the server goes on; callers of the killed batch retry
        else:
            server.kill()
        figures["kills"] += 1
        stop.set()
        for thread in threads:
            thread.join(60)
        figures["unacknowledged_at_kill"] += len(ledger.unacked)
    if victim != "writer":
        server.start()
    figures["retried_after_restart"] += retry_unacknowledged(server.target, tokens, ledger)
    assert server.stop() == 0
    figures["acknowledged"] = len(ledger.acked)
    figures["lost"] = check_ledger(db, ledger)
    return dict(figures)


def check_ledger(db: Path, ledger: Ledger) -> int:
    """Every invariant the crash must not break; returns the settlements lost (asserted 0)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT fixmedins_code, msgid, setl_id, psn_no, acct_pay_fen FROM settlements").fetchall()
        persons = dict(conn.execute("SELECT psn_no, acct_balc_fen FROM persons"))
    stored: dict[tuple[str, str], list[str]] = defaultdict(list)
    for code, msgid, setl_id, *_ in rows:
        stored[(code, msgid)].append(setl_id)
    lost = [m for m in ledger.acked if stored.get((ledger.code_of(m), m)) != [ledger.acked[m]]]
    assert lost == [], f"acknowledged but not stored exactly once with its setl_id: {lost[:5]}"
    sent = set(ledger.settles) | set(ledger.reversals)
    assert len(rows) == len(stored) == len(sent), "every msgid sent is stored exactly once, and nothing else"
    report = verify_database(db)
    assert report.ok, (report.first_bad, report.balance_breaks, report.orphan_postings)
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    store = SqliteLedgerStore(db)
    try:
        balances = store.book_balances()
    finally:
        store.close()
    assert trial_balance_breaks(balances) == [] and reciprocity_breaks(balances) == []
    opening = {p["psn_no"]: p["acct_balc_fen"] for p in sample_document()["persons"]}
    taken: dict[str, int] = defaultdict(int)
    for *_, psn_no, acct_pay_fen in rows:
        taken[psn_no] += acct_pay_fen
    assert {p: opening[p] - taken[p] for p in persons} == persons, "account balances match the stored settlements"
    return len(lost)


def _report(figures: dict[str, int], seed: int) -> None:
    print("\ncrash figures:", json.dumps({"seed": seed, **figures}))


def test_kill9_under_load_loses_nothing(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    figures = run_crash_rounds(tmp_path, int(os.environ.get("CRASH_ROUNDS", "5")), seed)
    _report(figures, seed)
    assert figures["lost"] == 0 and figures["kills"] >= 1 and figures["acknowledged"] > 0


@pytest.mark.parametrize("victim", ["server+writer", "writer"])
def test_kill9_with_the_writer_process_loses_nothing(tmp_path, victim):
    """`serve --writer-process`: the server killed (its writer child then
    finds its pipe closed), or only the writer child killed mid-batch (the
    server answers that batch UNAVAILABLE and starts a new writer)."""
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    figures = run_crash_rounds(tmp_path, int(os.environ.get("CRASH_ROUNDS", "5")), seed, victim)
    _report({**figures, "victim": victim}, seed)  # type: ignore[dict-item]
    assert figures["lost"] == 0 and figures["kills"] >= 1 and figures["acknowledged"] > 0


@pytest.mark.slow
def test_kill9_long_form(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    figures = run_crash_rounds(tmp_path, int(os.environ.get("CRASH_ROUNDS", "50")), seed)
    _report(figures, seed)
    assert figures["lost"] == 0

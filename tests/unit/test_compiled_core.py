"""The compiled core (medsettle/compiled.py) and the interpreted one give the
same answers and write the same ledger, byte for byte; and each mode runs
the path it says, so a build that silently failed is seen."""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from medsettle import compiled

RUN = Path(__file__).with_name("compiled_core_run.py")


def compiler_available() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def test_each_mode_runs_the_path_it_says() -> None:
    """MEDSETTLE_PURE=1: every module from its source. Otherwise, where the
    package could be built with a C compiler, every module compiled."""
    active = compiled.active()
    assert set(active) == set(compiled.COMPILED_MODULES)
    if compiled.pure_requested():
        assert not any(active.values()), active
    elif compiler_available():
        assert all(active.values()), f"not compiled (rebuild: pip install -e .): {active}"


def run(tmp_path: Path, pure: bool, script: Path = RUN) -> tuple[dict[str, bool], list[bytes], list[str]]:
    """(active modules, pickled outcomes, the ledger's SQL dump) of one run
    of `script` (LEDGER.db OUTCOMES.bin) in a process of its own."""
    name = "pure" if pure else "default"
    db, outcomes = tmp_path / f"{name}.db", tmp_path / f"{name}.bin"
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    if pure:
        env[compiled.PURE_ENV] = "1"
    subprocess.run([sys.executable, str(script), str(db), str(outcomes)], env=env, check=True, timeout=240)
    answers = []
    with outcomes.open("rb") as file:
        active = pickle.load(file)
        while True:
            try:
                answers.append(pickle.dumps(pickle.load(file)))
            except EOFError:
                break
    conn = sqlite3.connect(db)
    # every table but the schema's version row, which records when the file was created
    dump = [line for line in conn.iterdump() if not line.startswith('INSERT INTO "schema_version"')]
    conn.close()
    return active, answers, dump


def test_compiled_and_interpreted_settle_alike(tmp_path: Path) -> None:
    default_active, default_answers, default_ledger = run(tmp_path, pure=False)
    pure_active, pure_answers, pure_ledger = run(tmp_path, pure=True)
    assert not any(pure_active.values())
    if compiler_available():
        assert all(default_active.values()), default_active
    # The mix exercised what it should: settled, refused, reversed.
    assert len(default_answers) > 500
    kinds = {pickle.loads(a)[0] if isinstance(pickle.loads(a), tuple) else "settled" for a in default_answers}
    assert kinds == {"refused", "settled"}
    assert sum("INSERT INTO \"journal_entries\"" in line for line in default_ledger) > 300
    # ... and the Internet+ stage's rules and rows (compiled_core_run.py's internet mix)
    refused_rules = {answer[4].get("rule") for answer in map(pickle.loads, default_answers) if isinstance(answer, tuple)}
    assert refused_rules >= {"QUOTA_REACHED", "ECERT_REPLAY", "AGREEMENT_SUSPENDED", "FOLLOWUP_WINDOW", "ONLINE_SCOPE",
                             "RX_VOID", "RX_EXPIRED", "RX_QUANTITY_EXCEEDED", "RX_OTHER_PERSON",
                             "RX_DISPENSED"}, refused_rules
    for table in ("audit_flags", "visit_log", "prescriptions", "rx_fill_items", "rx_fills", "ecert_nonces",
                  "host_quota_use"):
        assert any(line.startswith(f'INSERT INTO "{table}"') for line in default_ledger), table
    assert default_answers == pure_answers
    assert default_ledger == pure_ledger

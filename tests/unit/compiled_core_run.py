"""Settles a fixed, seeded mix of bills through SettlementProcessor on a
fresh SQLite file and writes each outcome, pickled, to a file: run once
compiled and once with MEDSETTLE_PURE=1 by test_compiled_core.py, which
compares the outcomes and the ledgers byte for byte.

    python compiled_core_run.py LEDGER.db OUTCOMES.bin
"""

from __future__ import annotations

import datetime as dt
import pickle
import random
import sys

from medsettle import compiled
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Refused
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

SEED = 20261206
BATCHES = 40


def bills_and_reversals(rng: random.Random, reference, persons, batch: int, settled: list) -> list:
    """One batch: settlements (some refused: unknown item, mismatched person,
    a visit the institution cannot take), pre-settlements, retries, msgid
    conflicts and reversals (of settled, unknown and reversal ids)."""
    codes = sorted(code for code, inst in reference.institutions.items() if inst.kind.value != "internet_hospital")
    items = sorted(reference.catalogue)
    commands: list = []
    for i in range(rng.randint(1, 60)):
        roll = rng.random()
        if roll < 0.12 and settled:
            setl_id, code = rng.choice(settled)
            commands.append(ReverseCommand(f"R{batch}-{i}", code, setl_id))
            continue
        if roll < 0.18 and commands and isinstance(commands[-1], SettleCommand):
            earlier = commands[-1].bill  # a retry, or the same msgid with another payload
            if rng.random() < 0.5:
                earlier = Bill(**{**{f: getattr(earlier, f) for f in earlier.__slots__}, "acct_used_flag": not earlier.acct_used_flag})
            commands.append(SettleCommand(earlier, persist=True))
            continue
        person = rng.choice(persons)
        code = rng.choice(codes)
        lines = tuple(
            FeeLine(str(n), rng.choice(items) if rng.random() > 0.03 else "NO-SUCH-ITEM",
                    rng.randint(1, 5), rng.randint(1, 300_000))
            for n in range(rng.randint(1, 6))
        )
        visit = VisitType.PHARMACY if code.startswith("P") else rng.choice((VisitType.OUTPATIENT, VisitType.INPATIENT))
        if rng.random() < 0.03:
            visit = VisitType.PHARMACY  # refused at a hospital, unless it is a pharmacy
        bill = Bill(
            msgid=f"M{batch}-{i}", fixmedins_code=code, psn_no=person.psn_no,
            insutype=person.insutype if rng.random() > 0.03 else 999,
            insuplc_admdvs=person.insuplc_admdvs, visit_type=visit, fee_lines=lines,
            acct_used_flag=rng.random() < 0.7,
        )
        commands.append(SettleCommand(bill, persist=rng.random() > 0.1))
    return commands


def main(db_path: str, outcomes_path: str) -> None:
    clock = FixedClock(dt.datetime(2026, 12, 31, 23, 57, tzinfo=CHINA_TZ))  # the year turns during the run
    store = SqliteLedgerStore(db_path)
    reference = open_reference(store, clock)
    persons = parse_document(sample_document())[1]
    processor = SettlementProcessor(store, reference, clock)
    rng = random.Random(SEED)
    settled: list = []
    with open(outcomes_path, "wb") as out:
        pickle.dump(compiled.active(), out)
        for batch in range(BATCHES):
            commands = bills_and_reversals(rng, reference, persons, batch, settled)
            for outcome in processor.run_batch(commands):
                if isinstance(outcome, Refused):
                    pickle.dump(("refused", outcome.reason, str(outcome), outcome.violations, outcome.metadata), out)
                else:
                    pickle.dump(outcome, out)
                    if outcome.setl_id:
                        settled.append((outcome.setl_id, outcome.fixmedins_code))
            clock.advance(dt.timedelta(seconds=7))
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Settles a fixed, seeded mix of bills through SettlementProcessor on a
fresh SQLite file and writes each outcome, pickled, to a file: run once
compiled and once with MEDSETTLE_PURE=1 by test_compiled_core.py, which
compares the outcomes and the ledgers byte for byte.

The mix has ordinary bills and Internet+ traffic: follow-ups at internet
hospitals (agreements, one suspended for a while; e-certificates, some
replayed; windows, diseases, scope), e-prescriptions issued with visits
and filled at pharmacies (partly, too much, by another person, unknown,
expired, void; where no record is required, filled once), host quotas
small enough to be reached (warned and refused), the audit rules, and
reversals of all of it. The clock turns the year, then jumps four days.

    python compiled_core_run.py LEDGER.db OUTCOMES.bin
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pickle
import random
import sys
from typing import Any

from medsettle import compiled
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Refused
from medsettle.ledger.reference.internet import AgreementStatus
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription, VisitType
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand, SettlementProcessor
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

SEED = 20261207
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
                earlier = dataclasses.replace(earlier, acct_used_flag=not earlier.acct_used_flag)
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


INTERNET_HOSPITALS = ("H44010100901", "H31010100901", "H32010100901", "H35010100901", "H64010100901")
PHARMACIES = ("P44010100001", "P44030100001")
DIAGNOSES = ("E11.9", "I10", "J45.0", "e11.2", "A09", "K29.5")
ONLINE_ITEMS = ("S0011", "XA0102", "XB0201", "XB0303", "S0101", "S0102", "S0001")


def internet_commands(rng: random.Random, reference, persons, batch: int, today: dt.date, issued: list) -> list:
    """One batch's Internet+ traffic: follow-ups (some issuing an
    e-prescription), offline visits that issue one, pharmacy sales against
    issued (and invented) prescriptions, reversals of issuing visits.
    issued: (prescriber, rx_id, psn_no, insutype, insuplc, items, setl_id)
    of settled visits that issued one."""
    by_region: dict = {}
    for person in persons:
        by_region.setdefault(person.insuplc_admdvs[:2], []).append(person)
    commands: list = []
    for i in range(rng.randint(0, 25)):
        roll = rng.random()
        msgid = f"I{batch}-{i}"
        if roll < 0.03 and issued:  # the issuing visit reversed: its prescription is void
            prescriber, *_, setl_id = rng.choice(issued)
            commands.append(ReverseCommand(f"RI{batch}-{i}", prescriber, setl_id))
            continue
        if roll < 0.3 and issued:  # a pharmacy sale against a prescription
            prescriber, rx_id, psn_no, insutype, insuplc, items, _ = rng.choice(issued)
            if rng.random() < 0.1:
                rx_id = f"RX-NONE-{batch % 7}"  # never issued: unknown, or filled once where no record is required
            if rng.random() < 0.1:
                other = rng.choice(persons)
                psn_no, insutype, insuplc = other.psn_no, other.insutype, other.insuplc_admdvs
            lines = tuple(FeeLine(str(n), code, rng.randint(1, cnt + 1), 1500) for n, (code, cnt) in enumerate(items)
                          if rng.random() < 0.8) or (FeeLine("1", items[0][0], 1, 1500),)
            if rng.random() < 0.05:
                lines += (FeeLine("9", "XC0401", 1, 1200),)  # not on the prescription
            commands.append(SettleCommand(Bill(
                msgid=msgid, fixmedins_code=rng.choice(PHARMACIES), psn_no=psn_no, insutype=insutype,
                insuplc_admdvs=insuplc, visit_type=VisitType.PHARMACY, fee_lines=lines, rx_id=rx_id,
                prescribing_fixmedins_code=prescriber, pharmacist_id="PH0007"), persist=rng.random() > 0.05))
            continue
        if roll < 0.35:  # a prescription-only drug without a prescription, or over the counter
            person = rng.choice(persons)
            commands.append(SettleCommand(Bill(
                msgid=msgid, fixmedins_code=rng.choice(PHARMACIES), psn_no=person.psn_no, insutype=person.insutype,
                insuplc_admdvs=person.insuplc_admdvs, visit_type=VisitType.PHARMACY,
                fee_lines=(FeeLine("1", rng.choice(("XA0101", "XC0401", "XB0202")), 1, 900),)), persist=True))
            continue
        online = roll < 0.85
        code = rng.choice(INTERNET_HOSPITALS) if online else rng.choice(("H44010100001", "H31010100001"))
        person = rng.choice(by_region[code[1:3]] if rng.random() < 0.85 else persons)
        lines = tuple(FeeLine(str(n), rng.choice(ONLINE_ITEMS), rng.choice((1, 1, 2, 7, 12)), rng.randint(500, 90_000))
                      for n in range(rng.randint(1, 4)))
        fields: dict = {}
        if online:
            fields["prior_offline_diag_date"] = (today - dt.timedelta(days=rng.randint(-3, 200))).isoformat()
            if rng.random() < 0.3:
                fields["ecert_nonce"] = f"{rng.randrange(40):032x}"  # a few repeat: replays
                fields["ecert_expires_us"] = 1_900_000_000_000_000
        if rng.random() < 0.4:
            rx_items = tuple({rng.choice(("XA0102", "XB0201", "XB0303", "NO-SUCH-ITEM" if rng.random() < 0.05
                                          else "XA0101")): rng.randint(1, 4) for _ in range(rng.randint(1, 3))}.items())
            fields["prescription"] = Prescription(f"RX-{batch}-{i}" if rng.random() > 0.05 else "RX-TWICE", "DR0001",
                                                  rx_items, rng.choice((0, 0, 2, 5, 31)))
        commands.append(SettleCommand(Bill(
            msgid=msgid, fixmedins_code=code, psn_no=person.psn_no, insutype=person.insutype,
            insuplc_admdvs=person.insuplc_admdvs,
            visit_type=VisitType.INTERNET_FOLLOWUP if online else VisitType.OUTPATIENT, fee_lines=lines,
            acct_used_flag=rng.random() < 0.5, diag_code=rng.choice(DIAGNOSES), **fields), persist=rng.random() > 0.05))
    return commands


def internet_document() -> dict:
    """The sample with host quotas a run reaches (warn and refuse), for both
    years it spans, and a pharmacy region that needs no recorded prescription."""
    doc = sample_document()
    doc["internet_policies"].append({"admdvs": "440300", "rx_record_required": False})
    for quota in doc["host_quotas"]:
        quota["quota_fen"] = 3_000_000 if quota["on_reach"] == "refuse" else 1_000_000
    doc["host_quotas"] += [dict(quota, year=2027) for quota in doc["host_quotas"]]
    return doc


def change_agreement(store, reference, batch: int, clock) -> None:
    """An operator suspends the Guangzhou internet hospital's agreement for a while, and ends Fujian's."""
    changes = {12: ("AGR-4401-901", AgreementStatus.SUSPENDED), 20: ("AGR-4401-901", AgreementStatus.ACTIVE),
               28: ("AGR-3501-901", AgreementStatus.ENDED)}
    if batch in changes:
        number, status = changes[batch]
        agreement = next(a for a in reference.internet.agreements if a.agreement_no == number)
        store.internet_state().save_agreement(dataclasses.replace(agreement, status=status), batch)


def fresh_ledger(db_path: str, doc: dict, clock: FixedClock) -> tuple[SqliteLedgerStore, Any, Any]:
    """A new SQLite ledger holding the reference document: (store, its reference, the persons)."""
    store = SqliteLedgerStore(db_path)
    _, persons = parse_document(doc)
    store.save_reference(json.dumps(doc, ensure_ascii=False), persons, clock.now())
    return store, open_reference(store, clock), persons


def main(db_path: str, outcomes_path: str) -> None:
    clock = FixedClock(dt.datetime(2026, 12, 31, 23, 57, tzinfo=CHINA_TZ))  # the year turns during the run
    store, reference, persons = fresh_ledger(db_path, internet_document(), clock)
    processor = SettlementProcessor(store, reference, clock)
    rng = random.Random(SEED)
    settled: list = []
    issued: list = []
    with open(outcomes_path, "wb") as out:
        pickle.dump(compiled.active(), out)
        for batch in range(BATCHES):
            change_agreement(store, reference, batch, clock)
            commands = bills_and_reversals(rng, reference, persons, batch, settled)
            commands += internet_commands(rng, reference, persons, batch, clock.now().astimezone(CHINA_TZ).date(), issued)
            rng.shuffle(commands)
            for command, outcome in zip(commands, processor.run_batch(commands)):
                if isinstance(outcome, Refused):
                    pickle.dump(("refused", outcome.reason, str(outcome), outcome.violations, outcome.metadata), out)
                else:
                    pickle.dump(outcome, out)
                    if outcome.setl_id:
                        settled.append((outcome.setl_id, outcome.fixmedins_code))
                    rx = getattr(command, "bill", None) and command.bill.prescription
                    if outcome.setl_id and rx:
                        bill = command.bill
                        issued.append((bill.fixmedins_code, rx.rx_id, bill.psn_no, bill.insutype,
                                       bill.insuplc_admdvs, rx.items, outcome.setl_id))
            clock.advance(dt.timedelta(seconds=7) if batch != BATCHES - 8 else dt.timedelta(days=4))
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

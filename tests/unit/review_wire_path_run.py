"""Runs a fixed, seeded mix of write requests AS BYTES through the writer's
bytes interface (server/writes.py WriteRequests.run_body: framing, parsing,
conversion, validation, the e-insurance certificate, the split, the result
message) on a fresh SQLite file and writes every answer body to a file: run
once compiled and once with MEDSETTLE_PURE=1 by
test_review_wire_path_compiled_alike.py, which compares them byte for byte.

The mix: well-formed bills (settled, replayed, replayed with another
payload), pre-settlements, reversals (good and of unknown settlements),
each field of a bill set to a value at or past its bound (lengths, non-ASCII
letters and digits, signed and 64-bit numbers, unknown enum values), request
bytes with a byte changed, cut short or extended, an unknown kind, and
e-insurance certificates (good, expired, forged, replayed).

    python review_wire_path_run.py LEDGER.db ANSWERS.bin
"""

from __future__ import annotations

import datetime as dt
import pickle
import random
import sys

from medsettle import compiled
from medsettle.ledger import ecert
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.settlement.process import SettlementProcessor
from medsettle.server import wire
from medsettle.server.writes import WriteRequests
from medsettle.v1 import settlement_pb2 as pb

from compiled_core_run import fresh_ledger  # run as a script: its folder is on sys.path

SEED = 20261206
BATCHES = 60
KEY = b"review-wire-path-key-32-bytes-ok"
TEXTS = ["", "A", "A" * 30, "A" * 31, "A" * 51, "Ａ1", "١٢", "²", "A\n", "-A", "A.1", "é" * 20]
NUMBERS = [-(2 ** 63), -1, 0, 1, 99_999, 100_000, 100_001, 2 ** 31, 2 ** 62, 2 ** 63 - 1]
PLACES = [("H44010100001", "44010000000000000001", "440100", 310), ("H44010100002", "44010000000000000002", "440100", 390),
          ("H44030100001", "44060000000000000001", "440600", 310), ("H13010100001", "44030000000000000001", "440300", 310),
          ("P44010100001", "44010000000000000001", "440100", 310)]


def good_bill(rng: random.Random, n: int) -> pb.SettleRequest:
    code, psn_no, insuplc, insutype = rng.choice(PLACES)
    lines = [pb.FeeLine(feedetl_sn=str(i + 1), hilist_code=rng.choice(["S0001", "XB0201", "XC0401", "XA0102"]),
                        cnt=rng.randint(1, 3), pric_fen=rng.randint(1, 9000)) for i in range(rng.randint(1, 4))]
    return pb.SettleRequest(msgid=f"W{n:08d}", fixmedins_code=code, psn_no=psn_no, insutype=insutype,  # type: ignore[arg-type]
                            insuplc_admdvs=insuplc, visit_type=pb.VISIT_TYPE_OUTPATIENT if code[0] == "H" else
                            pb.VISIT_TYPE_PHARMACY, acct_used_flag=rng.random() < 0.5, fee_lines=lines)


def bad_bill(rng: random.Random, n: int) -> pb.SettleRequest:
    bill = good_bill(rng, n)
    field = rng.choice(["msgid", "fixmedins_code", "psn_no", "insuplc_admdvs", "diag_code", "rx_id",
                        "prescribing_fixmedins_code", "pharmacist_id", "prior_offline_diag_date", "insutype",
                        "visit_type", "delivery_fee_fen", "line"])
    if field in ("insutype", "visit_type", "delivery_fee_fen"):
        value = rng.choice(NUMBERS if field == "delivery_fee_fen" else [-1, 0, 7, 311, 2 ** 31 - 1])
        try:
            setattr(bill, field, value)
        except ValueError:
            setattr(bill, field, 0)
    elif field == "line":
        line = bill.fee_lines[rng.randrange(len(bill.fee_lines))]
        part = rng.choice(["feedetl_sn", "hilist_code", "cnt", "pric_fen"])
        try:
            setattr(line, part, rng.choice(TEXTS) if part in ("feedetl_sn", "hilist_code") else rng.choice(NUMBERS))
        except ValueError:
            pass
    else:
        setattr(bill, field, rng.choice(TEXTS))
    return bill


def mangled(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    how = rng.randrange(3)
    if how == 0 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:
        del data[rng.randrange(len(data) + 1):]
    else:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def certificate(rng: random.Random, now: dt.datetime, n: int) -> str:
    """A certificate of a sample person: valid, expired, forged, or replayed (a nonce used before)."""
    psn_no = rng.choice(PLACES)[1]
    issued_at = now - dt.timedelta(minutes=rng.choice([0, 0, 0, 10]))  # issued ten minutes ago: expired
    token = ecert.issue(KEY, psn_no, issued_at, ttl_s=300, nonce=f"{n % 50:032x}")
    return token if rng.random() < 0.85 else token[:-2] + "xx"


def writes_of_batch(rng: random.Random, batch: int, settled: list[tuple[str, str]], sent: list[bytes],
                    now: dt.datetime) -> list[tuple[int, bytes]]:
    writes = []
    for i in range(rng.randint(1, 12)):
        n = batch * 100 + i
        roll = rng.random()
        if roll < 0.35:
            data = good_bill(rng, n).SerializeToString()
            writes.append((wire.SETTLE, data))
            sent.append(data)
        elif roll < 0.45 and sent:
            data = rng.choice(sent)  # a replay
            writes.append((wire.SETTLE, data))
        elif roll < 0.5 and sent:
            replayed = pb.SettleRequest.FromString(rng.choice(sent))
            replayed.acct_used_flag = not replayed.acct_used_flag  # same msgid, another payload
            writes.append((wire.SETTLE, replayed.SerializeToString()))
        elif roll < 0.65:
            writes.append((wire.SETTLE, bad_bill(rng, n).SerializeToString()))
        elif roll < 0.72:
            writes.append((wire.PRE_SETTLE, pb.PreSettleRequest(request=good_bill(rng, n)).SerializeToString()))
        elif roll < 0.8:
            setl_id, code = rng.choice(settled) if settled and rng.random() < 0.8 else ("S999999999999", "H44010100001")
            writes.append((wire.REVERSE, pb.ReverseRequest(msgid=f"R{n:08d}", fixmedins_code=code,
                                                           setl_id=setl_id).SerializeToString()))
        elif roll < 0.9:
            writes.append((rng.choice(wire.KINDS), mangled(rng, good_bill(rng, n).SerializeToString())))
        elif roll < 0.93:
            writes.append((rng.choice([0, 9, 255]), good_bill(rng, n).SerializeToString()))
        else:
            bill = good_bill(rng, n)
            bill.psn_no = ""
            bill.ecert_token = certificate(rng, now, n)
            writes.append((wire.SETTLE, bill.SerializeToString()))
    return writes


def main(db_path: str, answers_path: str) -> None:
    clock = FixedClock(dt.datetime(2026, 12, 31, 23, 58, tzinfo=CHINA_TZ))  # the year turns during the run
    store, reference, _ = fresh_ledger(db_path, sample_document(), clock)
    requests = WriteRequests(SettlementProcessor(store, reference, clock), clock, KEY, store.rollback)
    rng = random.Random(SEED)
    settled: list[tuple[str, str]] = []
    sent: list[bytes] = []
    with open(answers_path, "wb") as out:
        pickle.dump(compiled.active(), out)
        for batch in range(BATCHES):
            answers_body = requests.run_body(wire.batch_body(writes_of_batch(rng, batch, settled, sent, clock.now())))
            pickle.dump(answers_body, out)
            for answer in wire.answers_of(answers_body):
                if answer[:1] == wire.settled(b""):
                    result = pb.SettleResult.FromString(wire.result_of(answer))
                    if result.setl_id:
                        settled.append((result.setl_id, result.fixmedins_code))
            clock.advance(dt.timedelta(seconds=5))
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

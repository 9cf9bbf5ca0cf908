"""The writer's bytes interface (server/wire.py and server/writes.py, with
convert.py and validation.py: compiled in the default build) answers every
request, good or hostile, with the same bytes compiled and interpreted, and
writes the same ledger: review_wire_path_run.py runs one seeded mix in a
process of each mode (test_compiled_core.run)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from medsettle.server import wire

from tests.unit.test_compiled_core import run

RUN = Path(__file__).with_name("review_wire_path_run.py")


def test_the_bytes_interface_answers_alike_compiled_and_interpreted(tmp_path: Path) -> None:
    _, default_bodies, default_ledger = run(tmp_path, pure=False, script=RUN)
    pure_active, pure_bodies, pure_ledger = run(tmp_path, pure=True, script=RUN)
    assert not any(pure_active.values())
    answers = [answer for body in default_bodies for answer in wire.answers_of(pickle.loads(body))]
    # the mix reached what it should: settlements, refusals of several reasons, the fields named
    settled = [a for a in answers if a[:1] == wire.settled(b"")]
    refusals = [json.loads(a[1:]) for a in answers if a[:1] != wire.settled(b"")]
    assert len(settled) > 100 and len(refusals) > 100, (len(settled), len(refusals))
    assert {r[0] for r in refusals} >= {"FIELD_INVALID", "RULE_REFUSED", "IDEMPOTENCY_CONFLICT", "SETTLEMENT_NOT_FOUND"}
    fields = {v[0].split("[")[0] for r in refusals for v in r[2]}
    assert fields >= {"request", "fee_lines", "msgid", "insuplc_admdvs", "insutype", "visit_type", "ecert_token"}, fields
    assert default_bodies == pure_bodies
    assert default_ledger == pure_ledger

"""The persons' days the writer keeps in memory agree with the visit log:
the same batches settled by a writer that keeps its days, by one restarted
before every batch (its Internet+ stage new, every day read from the log),
and by one that shares its ledger with other servers (every day read from
the log at each batch) get the same answers and store the same flags,
across midnight China time."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings

from medsettle.ledger.settlement.internet_stage import InternetStage
from medsettle.ledger.supervision.day_visits import DayVisits

from tests.unit.test_day_visits_bound import answer, as_command, batches, open_ledger

FLAGS = "SELECT setl_id, rule, field, detail FROM audit_flags ORDER BY flag_no"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches)
def test_kept_days_decide_as_a_restarted_writer_and_a_shared_ledger_do(tmp_path_factory, plan) -> None:
    kept_store, kept = open_ledger(tmp_path_factory.mktemp("kept"), None)
    restarted_store, restarted = open_ledger(tmp_path_factory.mktemp("restarted"), None)
    shared_store, shared = open_ledger(tmp_path_factory.mktemp("shared"), None)
    shared._internet = InternetStage(shared_store.internet_state(), shared._reference, sole_writer=False)
    number = 0
    try:
        for later, batch in plan:
            for processor in (kept, restarted, shared):
                if later:
                    processor._clock.advance(dt.timedelta(hours=1))
            restarted._internet = InternetStage(restarted_store.internet_state(), restarted._reference,
                                                days=DayVisits())
            commands = []
            for bill in batch:
                number += 1
                commands.append(as_command(number, *bill))
            expected = [answer(o) for o in kept.run_batch(commands)]
            assert [answer(o) for o in restarted.run_batch(commands)] == expected
            assert [answer(o) for o in shared.run_batch(commands)] == expected
        flags = kept_store.reader().execute(FLAGS).fetchall()
        assert restarted_store.reader().execute(FLAGS).fetchall() == flags
        assert shared_store.reader().execute(FLAGS).fetchall() == flags
    finally:
        for store in (kept_store, restarted_store, shared_store):
            store.close()

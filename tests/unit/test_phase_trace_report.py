"""benchmarks/phase_trace.py's answer to "was a batch held back while the
writer process was idle": the writer's gaps between two batches, and the
part of each in which the next batch's first write already waited in the
gRPC process, by why it was held (a batch with none in flight waited for
every answer; one sent beside others waited for more writes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "phase_trace.py"


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("phase_trace_report", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(first_submit: float, sent: float, in_flight: int) -> dict[str, float]:
    return {"first_submit": first_submit, "sent": sent, "in_flight": in_flight}


def _run(started: float, written: float) -> dict[str, float]:
    return {"started": started, "written": written}


def test_the_gaps_of_the_writer_and_the_writes_held_in_them(report) -> None:  # type: ignore[no-untyped-def]
    batches = [_batch(0.0, 0.0, 0), _batch(1.5, 3.0, 0), _batch(3.5, 4.5, 1), _batch(6.0, 6.0, 0)]
    writer = [_run(0.0, 1.0), _run(3.0, 4.0), _run(5.0, 5.5), _run(6.0, 7.0)]
    idle, held_for_answers, held_for_more = report.held_while_idle(batches, writer)
    # gaps: 1-3 (held 1.5-3, none in flight), 4-5 (held 4-4.5, beside one), 5.5-6 (nothing waited)
    assert (idle, held_for_answers, held_for_more) == pytest.approx((3.5, 1.5, 0.5))


def test_a_batch_begun_at_once_leaves_no_gap(report) -> None:  # type: ignore[no-untyped-def]
    batches = [_batch(0.0, 0.0, 0), _batch(0.5, 0.6, 1)]
    writer = [_run(0.0, 1.0), _run(1.0, 2.0)]  # read while the one before ran: begun as it ended
    assert report.held_while_idle(batches, writer) == (0.0, 0.0, 0.0)

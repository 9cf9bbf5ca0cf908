"""MEDSETTLE_PHASE_TRACE (ledger/storage/phase_trace.py): off, nothing is
kept; on, the group-commit writer and the writer process each write one row
per batch, in the same order, and benchmarks/phase_trace.py joins them."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from medsettle.ledger.service import open_reference
from medsettle.ledger.storage.phase_trace import ENV, tracer
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.writer import GroupCommitWriter, WriterLimits
from medsettle.ledger.storage.writer_process import ProcessChannel, WriterProcess
from medsettle.server import wire

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "phase_trace.py"


def _settle_batches(db: Path, clock, requests: list[bytes]) -> list[bytes]:  # type: ignore[no-untyped-def]
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    store.close()
    process = WriterProcess(db, clock)

    async def run() -> list[bytes]:
        writer = GroupCommitWriter(ProcessChannel(process), WriterLimits(overlap_min=1))
        writer.start()
        answers = []
        for request in requests:  # one batch each: the rows can be counted
            answers.append(await writer.submit((wire.SETTLE, request)))
        await writer.drain()
        writer.close()
        if writer._trace is not None:  # the test's process does not exit: its rows are written now
            writer._trace.dump()
        return answers

    try:
        return asyncio.run(run())
    finally:
        process.close()


def test_off_by_default_nothing_is_traced(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert tracer("batches", ("n",)) is None


def test_each_batch_is_traced_by_both_processes_and_joined(tmp_path, monkeypatch, clock, bill, capsys):
    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    monkeypatch.setenv(ENV, str(trace_dir))
    requests = [bill(msgid=f"PT{i}").SerializeToString() for i in range(3)]
    answers = _settle_batches(tmp_path / "ledger.db", clock, requests)
    assert all(wire.result_of(a) for a in answers)

    batches = (trace_dir / next(p.name for p in trace_dir.glob("batches-*.tsv"))).read_text().splitlines()
    writer = (trace_dir / next(p.name for p in trace_dir.glob("writer-*.tsv"))).read_text().splitlines()
    assert batches[0].split("\t")[0] == "n" and len(batches) == 1 + 3
    assert len(writer) == 1 + 3 + 1  # a row per batch, then the process's CPU
    for row in writer[1:4]:
        read, started, commit_start, committed, written, size = map(float, row.split("\t"))
        assert read <= started <= commit_start <= committed <= written and size > 0

    spec = importlib.util.spec_from_file_location("phase_trace_report", BENCHMARK)
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    report.main(trace_dir)
    printed = capsys.readouterr().out
    assert "3 batches sent, 3 run by the writer process" in printed
    assert "commit (SQLite's part; the fsync follows)" in printed and "fsyncs of the WAL" in printed

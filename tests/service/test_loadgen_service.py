"""The load generator against a real server on port 0: what it reports is
what the ledger holds (every acknowledged settlement is stored once; a
duplicate retry stores nothing; reversals are counted), in both modes and
against the echo baseline."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from conftest import ServerThread
from medsettle.client.loadgen import BillFactory, BillMix, Credentials, Phase, Target, run_phase, synthetic_reference
from medsettle.ledger.reference.loader import sample_document
from medsettle.ledger.service import load_reference_file
from medsettle.ledger.storage.sqlite import SqliteLedgerStore

PERSONS = 120


def _ledger_of_persons(tmp_path, clock):  # type: ignore[no-untyped-def]
    """A ledger whose reference data holds PERSONS synthetic insured persons."""
    db_path = tmp_path / "ledger.db"
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(synthetic_reference(sample_document(), PERSONS)), "utf-8")
    store = SqliteLedgerStore(db_path)
    load_reference_file(store, reference, clock)
    store.close()
    return db_path


@pytest.fixture
def load_server(tmp_path, clock):
    running = ServerThread(_ledger_of_persons(tmp_path, clock), clock, with_echo=True, http_address="127.0.0.1:0").start()
    yield running
    running.stop()


def _run(server: ServerThread, phase: Phase, mix: BillMix, credentials: Credentials | None = None) -> dict:
    async def main() -> dict:
        async with grpc.aio.insecure_channel(server.target) as channel:
            target = Target(server.target, channel, credentials or Credentials(dict(server.tokens)),
                            f"http://127.0.0.1:{server.http_port}")
            return await run_phase([target], phase, BillFactory(mix, seed=3))
    return asyncio.run(main())


def _stored(server: ServerThread) -> dict[int, int]:
    rows = server.service.store.reader().execute("SELECT kind, COUNT(*) FROM settlements GROUP BY kind")
    return dict(rows.fetchall())


def test_unary_mix_reports_what_the_ledger_holds(load_server):
    mix = BillMix(persons=PERSONS, cross_region_share=0.3, reversal_share=0.2, duplicate_share=0.2)
    report = _run(load_server, Phase("settle", "unary", concurrency=16, duration_s=None, count=400), mix)
    assert report["errors"] == {}
    kinds = report["by_kind"]
    assert sum(kinds.values()) == report["calls_ok"] == 400
    assert kinds["duplicate"] > 0 and kinds["reverse"] > 0
    stored = _stored(load_server)
    # A duplicate retry returned the first answer and stored nothing.
    assert stored == {1: kinds["settle"], 2: kinds["reverse"]}
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_http_mode_settles_over_the_gateway_what_the_ledger_holds(load_server):
    mix = BillMix(persons=PERSONS, cross_region_share=0.3, duplicate_share=0.2)
    report = _run(load_server, Phase("settle", "http", concurrency=8, duration_s=None, count=300), mix)
    assert report["errors"] == {}
    kinds = report["by_kind"]
    assert sum(kinds.values()) == report["calls_ok"] == 300 and kinds["duplicate"] > 0
    assert _stored(load_server) == {1: kinds["settle"]}  # a duplicate retry over HTTP stored nothing
    assert report["latency_ms"]["p99"] > 0 and "streams" not in report


def test_http_mode_counts_refusals_by_http_status(load_server):
    report = _run(load_server, Phase("settle", "http", concurrency=2, duration_s=None, count=20),
                  BillMix(persons=PERSONS), Credentials())
    assert report["calls_ok"] == 0 and report["errors"] == {"HTTP_401": 20}
    assert _stored(load_server) == {}


def test_stream_mode_settles_every_item_once(load_server):
    mix = BillMix(persons=PERSONS, duplicate_share=0.1)
    report = _run(load_server, Phase("settle", "stream", concurrency=64, streams=3, duration_s=None, count=300), mix)
    assert report["errors"] == {}
    assert report["calls_ok"] == 300
    assert _stored(load_server) == {1: report["by_kind"]["settle"]}


def test_batch_mode_settles_every_item_once(load_server):
    """SettleBatchStream, 10 bills per message, 301 bills: the last message
    is partial; duplicates (same msgid, in the same or the next message) store nothing."""
    mix = BillMix(persons=PERSONS, duplicate_share=0.1)
    phase = Phase("settle", "batch", concurrency=64, streams=3, duration_s=None, count=301, batch=10)
    report = _run(load_server, phase, mix)
    assert report["errors"] == {}
    assert report["calls_ok"] == 301 and report["batch"] == 10
    assert report["by_kind"]["duplicate"] > 0
    assert _stored(load_server) == {1: report["by_kind"]["settle"]}


def test_echo_baseline_stores_nothing(load_server):
    mix = BillMix(persons=PERSONS)
    unary = _run(load_server, Phase("echo", "unary", concurrency=8, duration_s=None, count=100), mix)
    stream = _run(load_server, Phase("echo", "stream", concurrency=32, streams=2, duration_s=None, count=100), mix)
    assert unary["calls_ok"] == stream["calls_ok"] == 100
    assert _stored(load_server) == {}


def test_calls_without_a_credential_are_counted_by_status_code(load_server):
    mix = BillMix(persons=PERSONS)

    async def main() -> dict:
        async with grpc.aio.insecure_channel(load_server.target) as channel:
            return await run_phase([Target(load_server.target, channel, Credentials())],
                                   Phase("settle", "unary", concurrency=4, duration_s=None, count=20), BillFactory(mix))
    report = asyncio.run(main())
    assert report["calls_ok"] == 0
    assert report["errors"] == {"UNAUTHENTICATED": 20}
    assert _stored(load_server) == {}


def test_a_timed_phase_stops_and_measures_after_the_warmup(load_server):
    mix = BillMix(persons=PERSONS)
    report = _run(load_server, Phase("settle", "unary", concurrency=8, duration_s=0.6, warmup_s=0.3), mix)
    assert report["calls_ok"] > 0
    assert report["calls_with_warmup"] >= report["calls_ok"]
    # The measured window covers the phase's duration (no upper bound: speed is for benchmarks/).
    assert report["elapsed_s"] > 0.4
    assert sum(_stored(load_server).values()) == report["calls_with_warmup"]


def test_a_run_against_a_target_reads_its_writer_commits_from_the_metrics_url(tmp_path, clock):
    from medsettle.client.loadrun import LoadPlan, run

    db_path = _ledger_of_persons(tmp_path, clock)
    server = ServerThread(db_path, clock, with_echo=True, metrics_address="127.0.0.1:0").start()
    try:
        plan = LoadPlan(modes=("unary",), concurrency=8, duration_s=None, count=120, warmup_s=0.0)
        report = run(plan, BillMix(persons=PERSONS), targets=[server.target], tokens=dict(server.tokens),
                     metrics_urls=[f"http://127.0.0.1:{server.metrics_port}/metrics"])
    finally:
        server.stop()
    echo, settle = report["phases"]
    assert echo["writer"]["batches"] == 0
    assert settle["writer"]["commands"] == _stored_count(db_path) == 120
    assert 1 <= settle["writer"]["batches"] <= 120


def _stored_count(db_path) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM settlements").fetchone()[0]


@pytest.fixture
def two_servers(tmp_path, clock):
    """Two servers, each on a ledger of its own: what each stored is what the generator sent it."""
    running = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        running.append(ServerThread(_ledger_of_persons(tmp_path / name, clock), clock, with_echo=True).start())
    yield running
    for server in running:
        server.stop()


def _run_on(servers: list[ServerThread], phase: Phase, mix: BillMix) -> dict:
    async def main() -> dict:
        channels = [grpc.aio.insecure_channel(s.target) for s in servers]
        try:
            targets = [Target(s.target, c, Credentials(dict(s.tokens))) for s, c in zip(servers, channels)]
            return await run_phase(targets, phase, BillFactory(mix, seed=5))
        finally:
            for channel in channels:
                await channel.close()
    return asyncio.run(main())


def test_unary_calls_are_spread_round_robin_over_the_targets(two_servers):
    a, b = two_servers
    report = _run_on(two_servers, Phase("settle", "unary", concurrency=16, duration_s=None, count=400),
                     BillMix(persons=PERSONS, cross_region_share=0.3))
    assert report["errors"] == {} and report["calls_ok"] == 400
    shares = report["by_target"]
    assert list(shares) == [a.target, b.target]
    # Calls are handed out in turn: each server got exactly half, and stored exactly what it was sent.
    assert shares[a.target]["calls_ok"] == shares[b.target]["calls_ok"] == 200
    assert _stored(a) == {1: 200} and _stored(b) == {1: 200}
    # One window for the phase: the targets' rates add up to the total.
    assert sum(s["calls_per_s"] for s in shares.values()) == pytest.approx(report["calls_per_s"], rel=0.01)
    for share in shares.values():
        assert share["elapsed_s"] == report["elapsed_s"]
        assert 0 < share["latency_ms"]["p50"] <= share["latency_ms"]["p99"] <= report["latency_ms"]["max"]


def test_each_stream_goes_to_one_target_and_all_its_items_with_it(two_servers):
    a, b = two_servers
    report = _run_on(two_servers, Phase("settle", "batch", concurrency=64, streams=4, duration_s=None, count=301,
                                        batch=8), BillMix(persons=PERSONS))
    assert report["errors"] == {} and report["calls_ok"] == 301
    shares = report["by_target"]
    assert shares[a.target]["calls_ok"] > 0 and shares[b.target]["calls_ok"] > 0
    assert _stored(a) == {1: shares[a.target]["calls_ok"]} and _stored(b) == {1: shares[b.target]["calls_ok"]}


def test_a_failing_target_is_counted_as_its_own(two_servers):
    """A target whose ledger does not know the generator's credentials: its
    half of the calls fail UNAUTHENTICATED, in its share only."""
    a, b = two_servers

    async def main() -> dict:
        async with grpc.aio.insecure_channel(a.target) as one, grpc.aio.insecure_channel(b.target) as two:
            targets = [Target(a.target, one, Credentials(dict(a.tokens))), Target(b.target, two, Credentials())]
            return await run_phase(targets, Phase("settle", "unary", concurrency=4, duration_s=None, count=40),
                                   BillFactory(BillMix(persons=PERSONS)))
    report = asyncio.run(main())
    assert report["by_target"][a.target]["calls_ok"] == 20 and report["by_target"][a.target]["errors"] == {}
    assert report["by_target"][b.target]["errors"] == {"UNAUTHENTICATED": 20}
    assert report["errors"] == {"UNAUTHENTICATED": 20}
    assert _stored(a) == {1: 20} and _stored(b) == {}

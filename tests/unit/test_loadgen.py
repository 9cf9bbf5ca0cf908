"""The load generator's pure parts: the bill mix, the synthetic reference
data, the report arithmetic."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.client import loadgen
from medsettle.client.db_probe import DatabaseSample, phase_cost
from medsettle.client.loadgen import (
    HOSPITALS,
    LATENCY_MAX_US,
    REGIONS,
    BillFactory,
    BillMix,
    Credentials,
    Phase,
    Tally,
    Target,
    http_to_grpc,
    iter_phases,
    merged,
    ratios,
    round_robin,
    rss_summary,
    run_phase,
    synthetic_psn_no,
    synthetic_reference,
)
from medsettle.client.loadrun import describe_db, summary_lines
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.settlement.validation import bill_violations
from medsettle.server.convert import bill_from_pb


def test_synthetic_reference_loads_with_every_person_insured_in_a_sample_region():
    base = sample_document()
    before = json.dumps(base, sort_keys=True)
    doc = synthetic_reference(base, 1_000)
    data, persons = parse_document(doc)  # the real loader accepts it whole
    assert len(persons) == len(base["persons"]) + 1_000
    synthetic = [p for p in persons if p.name.startswith("Load Person")]
    assert {p.insuplc_admdvs for p in synthetic} == set(REGIONS)
    assert {p.insutype for p in synthetic} == {310, 390}
    assert len({p.psn_no for p in persons}) == len(persons)
    assert all(data.policy(p.insuplc_admdvs, p.insutype) is not None for p in synthetic)
    assert json.dumps(base, sort_keys=True) == before  # the base document is not modified


@settings(max_examples=40, deadline=None)
@given(
    persons=st.integers(len(REGIONS), 5_000),
    cross=st.sampled_from([0.0, 0.3, 1.0]),
    lines=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_bills_are_well_formed_and_drawn_from_the_synthetic_persons(persons, cross, lines, seed):
    mix = BillMix(persons=persons, cross_region_share=cross, lines_per_bill=lines)
    factory = BillFactory(mix, seed=seed)
    known = {p["psn_no"] for p in synthetic_reference({"persons": []}, persons)["persons"]}
    bills = [factory.bill() for _ in range(30)]
    for bill in bills:
        assert bill_violations(bill_from_pb(bill)) == []
        assert bill.psn_no in known
        assert len(bill.fee_lines) == lines
        treated_in = HOSPITALS[bill.fixmedins_code]
        if cross == 0.0:
            assert bill.insuplc_admdvs == treated_in
        if cross == 1.0:
            assert bill.insuplc_admdvs != treated_in
    assert len({b.msgid for b in bills}) == len(bills)


def test_msgids_of_two_runs_differ_and_fit_the_bound():
    one, two = BillFactory(BillMix()), BillFactory(BillMix())
    a, b = one.next_msgid("R"), two.next_msgid("R")
    assert a != b
    assert len(a) <= 30 and len(one.bill().msgid) <= 30


def test_the_cross_region_share_is_about_what_was_asked():
    factory = BillFactory(BillMix(cross_region_share=0.25), seed=7)
    bills = [factory.bill() for _ in range(4_000)]
    cross = sum(b.insuplc_admdvs != HOSPITALS[b.fixmedins_code] for b in bills) / len(bills)
    assert 0.22 < cross < 0.28


def test_a_stream_bills_one_institution():
    factory = BillFactory(BillMix(), seed=1)
    assert {factory.bill("H13010100001").fixmedins_code for _ in range(50)} == {"H13010100001"}


def test_synthetic_person_numbers_fit_the_pattern():
    assert synthetic_psn_no("440100", 12) == "44010090000000000012"
    sample = {p["psn_no"] for p in sample_document()["persons"]}
    assert not sample & {synthetic_psn_no(r, i) for r in REGIONS for i in range(100)}


@pytest.mark.parametrize("kwargs, message", [
    ({"cross_region_share": 1.5}, "cross_region_share"),
    ({"lines_per_bill": 0}, "lines_per_bill"),
    ({"persons": 2}, "persons"),
    ({"duplicate_share": -0.1}, "duplicate_share"),
])
def test_a_bad_mix_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BillMix(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"duration_s": None, "count": None}, "exactly one"),
    ({"duration_s": 5.0, "count": 10}, "exactly one"),
    ({"concurrency": 0}, "concurrency"),
    ({"mode": "stream", "concurrency": 2, "streams": 3}, "streams"),
    ({"mode": "batch", "concurrency": 64, "streams": 1, "batch": 0}, "batch"),
    ({"mode": "batch", "concurrency": 512, "streams": 1, "batch": 257}, "batch"),
    ({"mode": "batch", "concurrency": 64, "streams": 4, "batch": 32}, "window"),
    ({"mode": "sideways"}, "unknown phase"),
])
def test_a_bad_phase_is_refused(kwargs, message):
    args = {"service": "settle", "mode": "unary", "concurrency": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        Phase(**args)


def test_tally_counts_successes_and_errors_by_code():
    tally = Tally(first_ns=time.perf_counter_ns())
    two_ms_ago = time.perf_counter_ns() - 2_000_000
    tally.record("settle", started_ns=two_ms_ago)
    tally.record("duplicate", started_ns=two_ms_ago)
    tally.record("settle", started_ns=two_ms_ago, error="RESOURCE_EXHAUSTED")
    summary = tally.summary()
    assert summary["calls_ok"] == 2 and summary["calls_failed"] == 1
    assert summary["by_kind"] == {"settle": 1, "duplicate": 1}
    assert summary["errors"] == {"RESOURCE_EXHAUSTED": 1}
    lat = summary["latency_ms"]
    assert 2.0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 60_000


def test_a_latency_beyond_the_histogram_is_kept_at_its_top():
    tally = Tally()
    tally.record("settle", started_ns=time.perf_counter_ns() - 10**15)  # "11 days"
    assert tally.summary()["latency_ms"]["max"] >= LATENCY_MAX_US / 1000 * 0.99


def test_ratio_is_settlements_over_echo_per_mode():
    phases = [
        {"service": "echo", "mode": "unary", "calls_per_s": 4000.0},
        {"service": "settle", "mode": "unary", "calls_per_s": 3000.0},
        {"service": "settle", "mode": "stream", "calls_per_s": 9000.0},  # no echo for it: no ratio
    ]
    assert ratios(phases) == {"unary": 0.75}


def test_the_http_mode_is_measured_against_the_grpc_unary_echo_and_settlements():
    phases = [
        {"service": "echo", "mode": "unary", "calls_per_s": 4000.0, "latency_ms": {"p99": 5.0}},
        {"service": "settle", "mode": "unary", "calls_per_s": 2000.0, "latency_ms": {"p99": 40.0}},
        {"service": "settle", "mode": "http", "calls_per_s": 1000.0, "latency_ms": {"p99": 60.0}},
    ]
    assert ratios(phases) == {"unary": 0.5, "http": 0.25}
    assert http_to_grpc(phases) == {"calls_per_s": 0.5, "p99": 1.5}
    assert http_to_grpc(phases[:2]) == {}
    assert [(p.service, p.mode) for p in iter_phases(("unary", "http"), True, concurrency=8, count=10, duration_s=None)] == \
        [("echo", "unary"), ("settle", "unary"), ("settle", "http")]
    with pytest.raises(ValueError, match="unknown phase"):
        Phase("echo", "http", concurrency=8)


def test_rss_summary_reports_growth_over_the_second_half():
    samples = [(0.0, 50 * 1024), (1.0, 60 * 1024), (2.0, 70 * 1024), (3.0, 71 * 1024)]
    summary = rss_summary(samples)
    assert summary["first_mib"] == 50.0 and summary["last_mib"] == 71.0 and summary["peak_mib"] == 71.0
    assert summary["second_half_growth_mib"] == 1.0  # from the sample at the middle (70 MiB) to the last
    assert rss_summary([]) == {"samples": 0}


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.lists(st.integers(1, 5_000_000), max_size=40), min_size=1, max_size=5))
def test_merged_tallies_hold_every_call_of_every_part(parts):
    tallies = []
    for i, latencies_us in enumerate(parts):
        tally = Tally(first_ns=1_000 + i, last_ns=2_000_000_000 + i)
        for latency in latencies_us:
            tally.histogram.record_value(latency)
            tally.ok += 1
            tally.by_kind["settle"] += 1
        tally.errors["UNAVAILABLE"] = i
        tallies.append(tally)
    total = merged(tallies)
    everything = [v for part in parts for v in part]
    assert total.ok == len(everything) == total.histogram.get_total_count()
    assert total.errors["UNAVAILABLE"] == sum(range(len(parts)))
    assert (total.first_ns, total.last_ns) == (1_000, 2_000_000_000 + len(parts) - 1)
    if everything:
        # Within the histogram's 3 significant digits.
        assert total.histogram.get_max_value() == pytest.approx(max(everything), rel=1e-3)
        assert total.histogram.get_min_value() == pytest.approx(min(everything), rel=1e-3)


@given(count=st.integers(1, 8), calls=st.integers(0, 200))
def test_round_robin_hands_the_targets_out_in_turn(count, calls):
    next_target = round_robin(count)
    order = [next_target() for _ in range(calls)]
    assert order == [i % count for i in range(calls)]


@pytest.mark.parametrize("names, phase, message", [
    (["a:1", "a:1"], Phase("settle", "unary", concurrency=4, count=1, duration_s=None), "distinct"),
    ([], Phase("settle", "unary", concurrency=4, count=1, duration_s=None), "distinct"),
    (["a:1", "b:1", "c:1"], Phase("settle", "stream", concurrency=4, streams=2, count=1, duration_s=None), "streams"),
])
def test_a_phase_refuses_targets_it_cannot_drive(names, phase, message):
    targets = [Target(name, None, Credentials()) for name in names]  # type: ignore[arg-type]  # refused before any call
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_phase(targets, phase, BillFactory(BillMix())))


def test_database_cost_counts_each_process_from_its_first_sample():
    before = DatabaseSample({10: 5.0, 11: 1.0, 12: 2.0}, wal_bytes=1_000)
    # 11 exited during the phase (its CPU is lost: counted as nothing); 13 started (counted from zero).
    after = DatabaseSample({10: 5.5, 12: 2.25, 13: 0.25}, wal_bytes=801_000)
    assert phase_cost(before, after, calls=1_000) == {"wal_bytes_per_call": 800.0, "cpu_ms_per_call": 1.0}
    remote = DatabaseSample(None, 1_000)
    assert phase_cost(remote, DatabaseSample(None, 3_000), calls=0) == {"wal_bytes_per_call": 2_000.0}


def test_a_report_names_the_database_without_its_password():
    assert describe_db("postgresql://load:s3cret@db.example:5433/bench?sslmode=require") == \
        "PostgreSQL postgresql://load@db.example:5433/bench"
    assert "s3cret" not in describe_db("postgres://u:s3cret@/x?host=/run/pg")
    assert describe_db("var/ledger.db") == "SQLite file"


def test_the_summary_shows_each_targets_share_and_the_database_cost():
    share = {"calls_ok": 10, "calls_failed": 0, "calls_per_s": 50.0, "latency_ms": {"p50": 2.0, "p99": 9.0}}
    phase = {"service": "settle", "mode": "unary", "concurrency": 8, "calls_per_s": 100.0, "calls_ok": 20,
             "errors": {}, "latency_ms": {"p50": 2.0, "p90": 5.0, "p99": 9.0, "max": 12.0},
             "by_target": {"127.0.0.1:1": share, "127.0.0.1:2": share},
             "database": {"cpu_ms_per_call": 0.4, "wal_bytes_per_call": 2_345.0}}
    text = "\n".join(summary_lines({"phases": [phase], "ratio_to_echo": {}}))
    assert "127.0.0.1:1:        50 calls/s" in text and "127.0.0.1:2:" in text
    assert "database CPU 0.400 ms/call, WAL 2,345 B/call" in text
    single = dict(phase, by_target={"127.0.0.1:1": share})
    assert "127.0.0.1:1:" not in "\n".join(summary_lines({"phases": [single], "ratio_to_echo": {}}))


def test_a_timed_phase_runs_its_whole_duration_after_the_measurement_opens():
    # On a loaded machine the warm-up can end late; the measured window must not shrink.
    budget = loadgen._Budget(Phase("settle", "unary", 1, duration_s=2.0, warmup_s=1.0))
    assert budget.take()  # still warming up: no deadline yet
    opened_s = time.monotonic()
    budget.measuring_from(opened_s)
    assert budget.take()
    budget.measuring_from(opened_s - 2.5)  # opened 2.5 s ago: its 2 s are over
    assert not budget.take()


def test_a_count_phase_stops_after_its_calls_whenever_it_opened():
    budget = loadgen._Budget(Phase("settle", "unary", 1, duration_s=None, count=2))
    budget.measuring_from(time.monotonic() - 100.0)
    assert [budget.take() for _ in range(3)] == [True, True, False]

"""`medsettle load` as operators run it: its own server process on a fresh
SQLite file, the echo baseline and every mode in one run, a JSON report."""

from __future__ import annotations

import json
import subprocess
import sys


def test_load_with_its_own_server_reports_every_phase(tmp_path):
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "-m", "medsettle", "load", "--count", "150", "--persons", "300", "--concurrency", "8",
         "--stream-concurrency", "32", "--streams", "2", "--mode", "unary,stream,batch,http", "--batch", "8",
         "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [(p["service"], p["mode"]) for p in report["phases"]] == [
        ("echo", "unary"), ("settle", "unary"), ("echo", "stream"), ("settle", "stream"),
        ("echo", "batch"), ("settle", "batch"), ("settle", "http")]
    assert report["database"]["kind"] == "sqlite" and len(report["targets"]) == 1
    for phase in report["phases"]:
        assert phase["calls_ok"] == 150 and phase["errors"] == {}, phase
        assert phase["by_target"][report["targets"][0]]["calls_ok"] == 150
        assert phase["cpu_ms_per_call"]["server"] > 0
        # From the server's /metrics: echo writes nothing; every settlement call went through a group commit.
        writer = phase["writer"]
        if phase["service"] == "echo":
            assert writer == {"batches": 0, "commands": 0, "commands_per_batch": 0.0, "batch_ms_mean": 0.0}
        else:
            assert 1 <= writer["batches"] <= writer["commands"] and writer["commands"] >= 150
            assert writer["batch_ms_mean"] > 0
    assert set(report["ratio_to_echo"]) == {"unary", "stream", "batch", "http"}
    assert set(report["http_to_grpc_unary"]) == {"calls_per_s", "p99"}
    assert report["phases"][-2]["batch"] == 8
    assert report["server_rss"]["samples"] >= 1 and report["server_rss"]["peak_mib"] > 10
    assert "settle/echo (unary)" in done.stdout and "HTTP gateway / gRPC unary settlements" in done.stdout
    assert "writes/commit" in done.stdout


def test_load_refuses_a_token_without_a_target():
    done = subprocess.run([sys.executable, "-m", "medsettle", "load", "--token", "x", "--count", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--target" in done.stderr


def test_a_metrics_url_that_does_not_answer_is_refused_before_the_run():
    done = subprocess.run([sys.executable, "-m", "medsettle", "load", "--target", "127.0.0.1:1", "--token", "x",
                           "--metrics-url", "http://127.0.0.1:1/metrics", "--count", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--metrics-url" in done.stderr and "cannot read http://127.0.0.1:1/metrics" in done.stderr
    assert "Traceback" not in done.stderr


def _load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medsettle", "load", *args], capture_output=True, text=True, timeout=60)


def test_several_servers_on_sqlite_are_refused_naming_the_option(tmp_path):
    done = _load("--servers", "2", "--db", str(tmp_path / "l.db"), "--count", "1")
    assert done.returncode == 2
    assert "--servers" in done.stderr and "SQLite has one writing server" in done.stderr
    assert not (tmp_path / "l.db").exists()


def test_own_servers_and_targets_do_not_mix():
    done = _load("--target", "127.0.0.1:1", "--servers", "2", "--db", "postgresql://x@h/db", "--count", "1")
    assert done.returncode == 2 and "--db/--servers" in done.stderr


def test_a_target_given_twice_is_refused():
    done = _load("--target", "127.0.0.1:1", "--target", "127.0.0.1:1", "--count", "1")
    assert done.returncode == 2 and "each server once" in done.stderr


def test_fewer_streams_than_servers_is_refused():
    done = _load("--target", "127.0.0.1:1", "--target", "127.0.0.1:2", "--mode", "stream", "--streams", "1",
                 "--count", "1")
    assert done.returncode == 2 and "--streams" in done.stderr


def test_a_database_that_cannot_take_the_reference_data_is_one_line(tmp_path):
    (tmp_path / "not-a-ledger.db").write_bytes(b"this is not an SQLite file" * 100)
    done = _load("--db", str(tmp_path / "not-a-ledger.db"), "--count", "1")
    assert done.returncode == 1
    assert "own server: loading the reference data failed: Error: --db: SQLite: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr

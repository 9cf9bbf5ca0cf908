"""The Grafana dashboard and the Prometheus alert rules in deploy/ name only
metrics that a real `medsettle serve --metrics-listen` serves: a server
process settles bills (the writer in its own process), a month is cleared
with a prepaid-fund shortfall while it runs, /metrics is scraped over HTTP,
and every metric and label the files use is checked against the scrape."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import defaultdict
from pathlib import Path

import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from medsettle.cli import main
from medsettle.client.settlement_client import SettlementClient
from tests.conftest import ServeProcess, issue_token, make_bill

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "medsettle.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_OWN = {"up"}  # made by Prometheus for each target, not served by medsettle
TARGET_LABELS = {"instance", "job"}  # attached by Prometheus at scrape time
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
OUR_NAME = re.compile(r"\b((?:medsettle|process)_[a-z0-9_]+)\b")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text("utf-8"))
    panels = board["panels"] + [p for row in board["panels"] for p in row.get("panels", [])]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v.get("definition")]
    return exprs


def alert_rules() -> list[dict]:  # type: ignore[type-arg]
    return [rule for group in yaml.safe_load(ALERTS.read_text("utf-8"))["groups"] for rule in group["rules"]]


def referenced(exprs: list[str]) -> dict[str, set[str]]:
    """Metric name -> the label names its selectors match on, over all expressions."""
    names: dict[str, set[str]] = defaultdict(set)
    for expr in exprs:
        for name in OUR_NAME.findall(expr):
            names[name]
        for name, matchers in SELECTOR.findall(expr):
            names[name] |= set(MATCHER.findall(matchers))
    return names


def scrape(url: str) -> dict[str, set[str]]:
    """Sample name (with _total, _bucket, ... as Prometheus stores it) -> its label names."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    served: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served[sample.name] |= set(sample.labels)
    return served


def shortfalls(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
    return {s.labels["party"]: s.value for s in families["medsettle_clearing_shortfall_fen"].samples}


def test_every_metric_the_dashboard_and_the_alerts_name_is_served(tmp_path):
    db = tmp_path / "ledger.db"
    token = issue_token(db, "H44060100001")  # Foshan's hospital: Guangzhou's insured treated there
    server = ServeProcess(db, tmp_path, "--metrics-listen", "127.0.0.1:0", "--writer-process",
                          "--clock", "2026-10-15T10:30:00+08:00").start()
    try:
        with SettlementClient(server.target, token=token, deadline_s=10.0, retries=0) as client:
            for _ in range(3):
                client.settle(make_bill(code="H44060100001", psn_no="44010000000000000001", insuplc="440100"))
        runner = CliRunner()
        paid = runner.invoke(main, ["prepay", "--province", "44", "--agency", "440100", "--amount-fen", "1",
                                    "--db", str(db), "--clock", "2026-10-20T10:00:00+08:00"])
        assert paid.exit_code == 0, paid.output
        cleared = runner.invoke(main, ["clear", "--province", "44", "--period", "2026-10", "--db", str(db),
                                       "--clock", "2026-11-02T09:00:00+08:00", "--statement-dir", str(tmp_path / "s")])
        assert cleared.exit_code == 0, cleared.output
        serving = [json.loads(line) for line in server.logs().splitlines() if '"serving"' in line][-1]
        served = scrape(serving["metrics_url"])
        owed = json.loads((tmp_path / "s" / "statement.json").read_text())["positions"]
        assert shortfalls(serving["metrics_url"]) == {p["party"]: p["shortfall_fen"] for p in owed}
        assert shortfalls(serving["metrics_url"])["440100"] > 0  # Guangzhou owed more than the 1 fen it prepaid
    finally:
        assert server.stop() == 0

    rules = alert_rules()
    for source, exprs in (("dashboard", dashboard_exprs()), ("alerts", [r["expr"] for r in rules])):
        names = referenced(exprs)
        assert names, source
        missing = sorted(set(names) - set(served) - PROMETHEUS_OWN)
        assert not missing, f"{source} names metrics that /metrics does not serve: {missing}"
        for name, labels in names.items():
            unknown = labels - served.get(name, set()) - TARGET_LABELS
            assert name in PROMETHEUS_OWN or not unknown, f"{source}: {name} has no label {sorted(unknown)}"


def test_the_alert_rules_cover_what_an_operator_is_paged_for():
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning") and rule["annotations"]["summary"], rule["alert"]
    exprs = " ".join(r["expr"] for r in rules)
    for needed in ("medsettle_writer_up", "medsettle_writer_restarts_total", 'result="OVERLOADED"',
                   "histogram_quantile(0.99", "medsettle_call_seconds_bucket", "medsettle_clearing_shortfall_fen"):
        assert needed in exprs, needed

"""Reads a medsettle server's /metrics (server/metrics.py) as Prometheus
would: the demo prints from it, the load generator reports the writer's
batches per phase from it."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value
SCRAPE_TIMEOUT_S = 10.0


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as answer:
        text = answer.read().decode("utf-8")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 if the server has not counted it yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(samples: Samples, name: str, key: str, **fixed: str) -> dict[str, float]:
    """The samples of name whose other labels are `fixed`, by the value of label `key`."""
    found = {}
    for (sample_name, labels), sample_value in samples.items():
        named = dict(labels)
        if sample_name == name and key in named and {k: v for k, v in named.items() if k != key} == fixed:
            found[named[key]] = sample_value
    return found

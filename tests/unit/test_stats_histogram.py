"""FixedHistogram: the buckets the metrics scrape reads (ledger/stats.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsettle.ledger.stats import MAX_BUCKETS, FixedHistogram

BOUNDS = (0.001, 0.01, 0.1, 1.0)

values = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@given(st.lists(values, max_size=200))
def test_cumulative_counts_are_what_each_bound_admits(observed):
    histogram = FixedHistogram(BOUNDS)
    for value in observed:
        histogram.observe(value)
    buckets = histogram.cumulative()
    assert [bound for bound, _ in buckets] == [*BOUNDS, math.inf]
    for bound, count in buckets:
        assert count == sum(1 for value in observed if value <= bound)
    assert histogram.count == len(observed)
    assert histogram.total == pytest.approx(sum(observed))


def test_a_value_equal_to_a_bound_is_in_that_bucket():
    histogram = FixedHistogram(BOUNDS)
    histogram.observe(0.01)
    assert histogram.counts == [0, 1, 0, 0, 0]
    histogram.observe(5.0)  # above every bound
    assert histogram.counts == [0, 1, 0, 0, 1]


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0), tuple(float(i) for i in range(MAX_BUCKETS + 1))])
def test_bounds_must_be_few_and_strictly_increasing(bounds):
    with pytest.raises(ValueError, match="bound"):
        FixedHistogram(bounds)

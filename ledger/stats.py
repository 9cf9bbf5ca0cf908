"""Counts kept on the hot path for the server's metrics (server/metrics.py).

One thread updates each of them; the metrics scrape reads them from another
thread without a lock, so a scrape may see a histogram's count one
observation ahead of its sum, as Prometheus tolerates. No allocation per
observation beyond Python's own ints: the buckets are fixed when made."""

from __future__ import annotations

from bisect import bisect_left

MAX_BUCKETS = 64


class FixedHistogram:
    """Observations counted by fixed upper bounds (a value equal to a bound
    falls in that bound's bucket, as Prometheus's `le` says), plus one
    bucket above the last bound, and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if not 1 <= len(bounds) <= MAX_BUCKETS:
            raise ValueError(f"a histogram has 1..{MAX_BUCKETS} bounds, got {len(bounds)}")
        if any(lower >= upper for lower, upper in zip(bounds, bounds[1:])):
            raise ValueError(f"bounds must increase strictly, got {bounds}")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (inf, all)."""
        running = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            buckets.append((bound, running))
        return buckets

"""The budget for looking unknown bearer tokens up in the database (server/auth.py)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from medsettle.server.auth import LookupBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_rate_then_one_per_interval():
    clock = Clock()
    budget = LookupBudget(4.0, clock)
    assert [budget.take() for _ in range(6)] == [True] * 4 + [False] * 2
    clock.now = 0.2  # 0.8 of a look-up refilled: not yet one
    assert not budget.take()
    clock.now = 0.26
    assert budget.take() and not budget.take()


def test_a_rate_below_one_still_allows_one_at_once():
    clock = Clock()
    budget = LookupBudget(0.5, clock)
    assert budget.take() and not budget.take()
    clock.now = 2.0
    assert budget.take()


@given(rate=st.floats(0.1, 100.0), gaps=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=200))
def test_never_more_than_the_burst_plus_the_rate_times_the_time(rate, gaps):
    clock = Clock()
    budget = LookupBudget(rate, clock)
    taken = 0
    for gap in gaps:
        clock.now += gap
        taken += budget.take()
    assert taken <= max(1.0, rate) + rate * clock.now + 1e-9

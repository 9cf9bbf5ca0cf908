"""Money is integer fen; the one rounding rule is half-up (DESIGN.md "Conventions").

Expectations are derived from exact rational arithmetic (fractions.Fraction),
never from the function under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.money import BASIS_POINTS, round_half_up_div, share_bp, yuan

FAST = settings(max_examples=400, deadline=None)


def exact_half_up(value: Fraction) -> int:
    """Round a non-negative rational half-up, by definition: floor(value + 1/2)."""
    assert value >= 0
    return math.floor(value + Fraction(1, 2))


def test_basis_points_mean_percent_times_100() -> None:
    assert BASIS_POINTS == 100 * 100


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (226, 10, 23),  # 22.6 -> 23 (the Hebei first self-pay, in tenths of a fen)
        (225, 10, 23),  # an exact half goes up
        (224, 10, 22),
        (5, 10, 1),  # 0.5 -> 1
        (4, 10, 0),
        (0, 7, 0),
        (14, 7, 2),  # exact division is untouched
        (1, 3, 0),
        (2, 3, 1),
        (-225, 10, -23),  # negative amounts (reversals) round half away from zero
        (-224, 10, -22),
        (-5, 10, -1),
    ],
)
def test_round_half_up_div_examples(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_up_div(numerator, denominator) == expected


@FAST
@given(st.integers(min_value=0, max_value=10**18), st.integers(min_value=1, max_value=10**9))
def test_round_half_up_div_is_nearest_integer_with_halves_up(numerator: int, denominator: int) -> None:
    exact = Fraction(numerator, denominator)
    result = round_half_up_div(numerator, denominator)
    assert result == exact_half_up(exact)
    assert abs(result - exact) <= Fraction(1, 2)
    if exact - math.floor(exact) == Fraction(1, 2):
        assert result == math.floor(exact) + 1


@FAST
@given(st.integers(min_value=0, max_value=10**18), st.integers(min_value=1, max_value=10**9))
def test_round_half_up_div_is_symmetric_for_negative_numerators(numerator: int, denominator: int) -> None:
    # a reversal rounds to the exact negation of what the original rounded to
    assert round_half_up_div(-numerator, denominator) == -round_half_up_div(numerator, denominator)


@FAST
@given(
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=0, max_value=BASIS_POINTS),
)
def test_share_bp_is_within_half_a_fen_of_the_exact_share(amount_fen: int, ratio_bp: int) -> None:
    exact = Fraction(amount_fen * ratio_bp, BASIS_POINTS)
    share = share_bp(amount_fen, ratio_bp)
    assert abs(share - exact) <= Fraction(1, 2)
    assert share == exact_half_up(exact)
    assert 0 <= share <= amount_fen  # a share never exceeds the whole


@FAST
@given(st.integers(min_value=0, max_value=10**12))
def test_share_bp_rounds_exact_halves_up(k: int) -> None:
    # 50 % of 2k+1 fen is exactly k + 0.5 fen -> k + 1
    assert share_bp(2 * k + 1, 5_000) == k + 1
    # 5 % of (20k + 10) fen is exactly k + 0.5 fen -> k + 1
    assert share_bp(20 * k + 10, 500) == k + 1
    # 1 bp of (10000k + 5000) fen is exactly k + 0.5 fen -> k + 1
    assert share_bp(10_000 * k + 5_000, 1) == k + 1


@pytest.mark.parametrize(
    ("amount_fen", "ratio_bp", "expected"),
    [
        (452, 500, 23),  # DOMAIN.md: 4.52 yuan x 0.05 = 0.226 -> 0.23
        (10, 500, 1),  # 0.5 fen exactly -> 1
        (9, 500, 0),  # 0.45 fen -> 0
        (12345, 0, 0),
        (12345, BASIS_POINTS, 12345),
        (1, 5_000, 1),  # 0.5 -> 1
        (3, 5_000, 2),  # 1.5 -> 2
        (5, 5_000, 3),  # 2.5 -> 3 (banker's rounding would give 2)
    ],
)
def test_share_bp_examples(amount_fen: int, ratio_bp: int, expected: int) -> None:
    assert share_bp(amount_fen, ratio_bp) == expected


@pytest.mark.parametrize("ratio_bp", [-1, BASIS_POINTS + 1])
def test_share_bp_refuses_ratios_outside_0_to_100_percent(ratio_bp: int) -> None:
    with pytest.raises(AssertionError):
        share_bp(100, ratio_bp)


@pytest.mark.parametrize(
    ("amount_fen", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (452, "4.52"),
        (137815, "1378.15"),
        (2344246, "23442.46"),
        (-452, "-4.52"),
        (-5, "-0.05"),
        (100, "1.00"),
    ],
)
def test_yuan_formats_fen_with_two_decimals(amount_fen: int, text: str) -> None:
    assert yuan(amount_fen) == text


@FAST
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_yuan_round_trips_exactly(amount_fen: int) -> None:
    text = yuan(amount_fen)
    whole, _, fen = text.lstrip("-").partition(".")
    assert len(fen) == 2
    sign = -1 if text.startswith("-") else 1
    assert sign * (int(whole) * 100 + int(fen)) == amount_fen

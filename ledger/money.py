"""Money is integer fen. Rounding happens here and nowhere else."""

BASIS_POINTS = 10_000  # 100 % expressed in basis points

MAX_AMOUNT_FEN = 10**13  # 100 billion yuan: larger than any bill or period total


def round_half_up_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, in integers only."""
    assert denominator > 0, denominator
    if numerator < 0:
        return -round_half_up_div(-numerator, denominator)
    return (2 * numerator + denominator) // (2 * denominator)


def share_bp(amount_fen: int, ratio_bp: int) -> int:
    """amount_fen * ratio_bp / 10000, rounded half-up: the one rounding rule."""
    assert 0 <= ratio_bp <= BASIS_POINTS, ratio_bp
    return round_half_up_div(amount_fen * ratio_bp, BASIS_POINTS)


def yuan(amount_fen: int) -> str:
    """Formats fen as yuan with two decimals, for people (never for storage)."""
    sign = "-" if amount_fen < 0 else ""
    whole, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{whole}.{fen:02d}"

"""The pure split of a bill: three lines (classes A, B and C), and five (the
hot-path goal's figure: 1 / median = splits a second on one core)."""

from __future__ import annotations

import pytest

from medsettle.ledger.settlement.model import Accumulators, FeeLine
from medsettle.ledger.settlement.split import SplitTerms, split_bill

from conftest import LINES

FIVE_LINES = (*LINES, FeeLine("4", "XA0101", 2, 2800), FeeLine("5", "XB0303", 3, 12000))


@pytest.mark.parametrize("lines", [LINES, FIVE_LINES], ids=["three_lines", "five_lines"])
def test_split(benchmark, reference, lines):
    priced = [(line, reference.item("44", line.hilist_code)) for line in lines]
    terms = SplitTerms(deductible_fen=0, annual_fund_cap_fen=50_000_000, ratio_bp=8_500, acct_allowed=True)
    before = Accumulators(0, 0, 100_000)
    split = benchmark(split_bill, priced, terms, before, True)
    # The split is still the split: its identities hold and the total is the bill's.
    assert not split.identity_errors()
    assert split.medfee_sumamt_fen == sum(line.cnt * line.pric_fen for line in lines)

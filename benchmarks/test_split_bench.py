"""The pure split of a three-line bill (classes A, B and C)."""

from __future__ import annotations

from medsettle.ledger.settlement.model import Accumulators, FeeLine
from medsettle.ledger.settlement.split import SplitTerms, split_bill

from conftest import LINES


def test_split_three_lines(benchmark, reference):
    priced = [(line, reference.item("44", line.hilist_code)) for line in LINES]
    terms = SplitTerms(deductible_fen=0, annual_fund_cap_fen=50_000_000, ratio_bp=8_500, acct_allowed=True)
    before = Accumulators(0, 0, 100_000)
    split = benchmark(split_bill, priced, terms, before, True)
    # The split is still the split: its identities hold and the total is the bill's.
    assert not split.identity_errors()
    assert split.medfee_sumamt_fen == sum(line.cnt * line.pric_fen for line in LINES)


FIVE_LINES = (*LINES, FeeLine("4", "XA0101", 2, 2800), FeeLine("5", "XB0303", 3, 12000))


def test_split_five_lines(benchmark, reference):
    """The figure of the hot-path goal (a five-line bill: 1 / median = splits a second on one core)."""
    priced = [(line, reference.item("44", line.hilist_code)) for line in FIVE_LINES]
    terms = SplitTerms(deductible_fen=50_000, annual_fund_cap_fen=50_000_000, ratio_bp=8_500, acct_allowed=True)
    before = Accumulators(10_000, 0, 100_000)
    split = benchmark(split_bill, priced, terms, before, True)
    assert not split.identity_errors()
    assert split.medfee_sumamt_fen == sum(line.cnt * line.pric_fen for line in FIVE_LINES)
    assert split.overlmt_selfpay_fen == 2 * (2800 - 2500)  # XA0101's price cap applies

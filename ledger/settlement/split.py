"""The split of one bill: line by line, then deductible -> ratio -> cap ->
personal account -> cash. Pure functions of (bill lines, policy terms,
the person's year-to-date accumulators); no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from medsettle.ledger.money import share_bp
from medsettle.ledger.reference.models import CatalogueItem, Category
from medsettle.ledger.settlement.model import Accumulators, FeeLine, LineSplit, Split


@dataclass(frozen=True, slots=True)
class SplitTerms:
    """The insurance place's policy as it applies to one bill."""

    deductible_fen: int
    annual_fund_cap_fen: int
    ratio_bp: int
    acct_allowed: bool = True
    # (line index, bp): the fund pays bp of that line's eligible part directly,
    # outside the deductible and the ratio (remote consultation: Fujian's
    # share of the fee schedule, Guizhou's county ratio); still within the annual cap
    direct_lines: tuple[tuple[int, int], ...] = ()


def split_line(line: FeeLine, item: CatalogueItem) -> LineSplit:
    """One fee line: full self-pay (class C), over-cap excess, class B first self-pay."""
    amount_fen = line.cnt * line.pric_fen
    if item.category == Category.C:
        return LineSplit(line.feedetl_sn, item.category, amount_fen, amount_fen, 0, 0, 0)
    unit_fen = line.pric_fen
    if item.price_cap_fen is not None and unit_fen > item.price_cap_fen:
        unit_fen = item.price_cap_fen
    capped_fen = line.cnt * unit_fen
    overlmt_fen = amount_fen - capped_fen
    preselfpay_fen = share_bp(capped_fen, item.selfpay_prop_bp) if item.category == Category.B else 0
    return LineSplit(
        line.feedetl_sn, item.category, amount_fen, 0, overlmt_fen,
        preselfpay_fen, capped_fen - preselfpay_fen,
    )


def split_bill(
    priced_lines: Sequence[tuple[FeeLine, CatalogueItem]],
    terms: SplitTerms,
    accumulators: Accumulators,
    acct_used_flag: bool,
    delivery_fee_fen: int = 0,
) -> Split:
    """The whole bill. delivery_fee_fen is never covered: it is full self-pay,
    paid in cash (neither the fund nor the personal account pays it)."""
    assert accumulators.acct_balc_fen >= 0, "a personal account never goes below zero"
    assert delivery_fee_fen >= 0
    line_splits = tuple([split_line(line, item) for line, item in priced_lines])
    fulamt_fen, overlmt_fen, preselfpay_fen, inscp_fen = delivery_fee_fen, 0, 0, 0
    for s in line_splits:  # one pass, not four sums: this runs once per settlement
        fulamt_fen += s.fulamt_ownpay_amt_fen
        overlmt_fen += s.overlmt_selfpay_fen
        preselfpay_fen += s.preselfpay_amt_fen
        inscp_fen += s.inscp_scp_amt_fen
    medfee_fen = fulamt_fen + overlmt_fen + preselfpay_fen + inscp_fen

    direct_fen = direct_inscp_fen = 0
    for index, bp in terms.direct_lines:
        direct_inscp_fen += line_splits[index].inscp_scp_amt_fen
        direct_fen += share_bp(line_splits[index].inscp_scp_amt_fen, bp)
    ordinary_fen = inscp_fen - direct_inscp_fen
    dedc_left_fen = max(0, terms.deductible_fen - accumulators.dedc_used_fen)
    act_pay_dedc_fen = min(ordinary_fen, dedc_left_fen)
    fund_share_fen = share_bp(ordinary_fen - act_pay_dedc_fen, terms.ratio_bp) + direct_fen
    cap_left_fen = max(0, terms.annual_fund_cap_fen - accumulators.fund_paid_fen)
    hifp_pay_fen = min(fund_share_fen, cap_left_fen)
    fund_pay_sumamt_fen = hifp_pay_fen

    psn_part_fen = medfee_fen - fund_pay_sumamt_fen
    acct_pay_fen = 0
    if acct_used_flag and terms.acct_allowed:
        acct_pay_fen = min(psn_part_fen - delivery_fee_fen, accumulators.acct_balc_fen)
    split = Split(
        medfee_sumamt_fen=medfee_fen,
        fulamt_ownpay_amt_fen=fulamt_fen,
        overlmt_selfpay_fen=overlmt_fen,
        preselfpay_amt_fen=preselfpay_fen,
        inscp_scp_amt_fen=inscp_fen,
        act_pay_dedc_fen=act_pay_dedc_fen,
        hifp_pay_fen=hifp_pay_fen,
        fund_pay_sumamt_fen=fund_pay_sumamt_fen,
        psn_part_amt_fen=psn_part_fen,
        hosp_part_amt_fen=0,
        acct_pay_fen=acct_pay_fen,
        psn_cash_pay_fen=psn_part_fen - acct_pay_fen,
        balc_fen=accumulators.acct_balc_fen - acct_pay_fen,
        line_splits=line_splits,
    )
    assert not split.identity_errors(), split.identity_errors()
    assert split.balc_fen >= 0
    return split


def accumulate(accumulators: Accumulators, split: Split) -> Accumulators:
    """The person's state after a split (a reversal's split is negative)."""
    after = Accumulators(
        dedc_used_fen=accumulators.dedc_used_fen + split.act_pay_dedc_fen,
        fund_paid_fen=accumulators.fund_paid_fen + split.hifp_pay_fen,
        acct_balc_fen=accumulators.acct_balc_fen - split.acct_pay_fen,
    )
    assert after.acct_balc_fen >= 0, "a personal account never goes below zero"
    return after

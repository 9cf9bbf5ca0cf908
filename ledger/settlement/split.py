"""The split of one bill: line by line, then deductible -> ratio -> cap ->
personal account -> cash. Pure functions of (bill lines, policy terms,
the person's year-to-date accumulators); no I/O, no clock.
"""

# cython: nonecheck=True
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from medsettle.ledger.money import share_bp
from medsettle.ledger.reference.models import CatalogueItem, Category
from medsettle.ledger.settlement.model import Accumulators, FeeLine, LineSplit, Split

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:  # the values' C struct members, read where a local is declared of their type (model.pxd)
    from cython.cimports.medsettle.ledger.settlement.model import Accumulators, FeeLine, LineSplit, Split


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


# Read once: looking a member up on its enum class costs more than a line's arithmetic.
_CLASS_B = Category.B
_CLASS_C = Category.C


@cython.locals(line=FeeLine)
def split_lines(
    priced_lines: Sequence[tuple[FeeLine, CatalogueItem]],
) -> tuple[tuple[LineSplit, ...], int, int, int, int]:
    """Each fee line by its catalogue item: full self-pay (class C), the excess
    over the unit price cap, class B first self-pay, the eligible rest. With
    the lines' sums (fulamt_ownpay, overlmt_selfpay, preselfpay, inscp_scp)
    taken in the same pass: this runs once per settlement."""
    line_splits = []
    fulamt_fen = overlmt_fen = preselfpay_fen = inscp_fen = 0
    for line, item in priced_lines:
        category, cnt, pric_fen = item.category, line.cnt, line.pric_fen
        amount_fen = cnt * pric_fen
        if category == _CLASS_C:
            fulamt_fen += amount_fen
            line_splits.append(LineSplit(line.feedetl_sn, category, amount_fen, amount_fen, 0, 0, 0))
            continue
        capped_fen = amount_fen
        price_cap_fen = item.price_cap_fen
        if price_cap_fen is not None and pric_fen > price_cap_fen:
            capped_fen = cnt * price_cap_fen
        line_overlmt_fen = amount_fen - capped_fen
        line_preselfpay_fen = share_bp(capped_fen, item.selfpay_prop_bp) if category == _CLASS_B else 0
        line_inscp_fen = capped_fen - line_preselfpay_fen
        overlmt_fen += line_overlmt_fen
        preselfpay_fen += line_preselfpay_fen
        inscp_fen += line_inscp_fen
        line_splits.append(LineSplit(
            line.feedetl_sn, category, amount_fen, 0, line_overlmt_fen, line_preselfpay_fen, line_inscp_fen,
        ))
    return tuple(line_splits), fulamt_fen, overlmt_fen, preselfpay_fen, inscp_fen


@cython.locals(accumulators=Accumulators, split=Split)
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
    line_splits, fulamt_fen, overlmt_fen, preselfpay_fen, inscp_fen = split_lines(priced_lines)
    fulamt_fen += delivery_fee_fen
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
    acct_balc_fen = accumulators.acct_balc_fen
    if acct_used_flag and terms.acct_allowed:
        acct_pay_fen = min(psn_part_fen - delivery_fee_fen, acct_balc_fen)
    # Positional, in the fields' order: matching fourteen keywords to their
    # parameters cost a tenth of the whole split.
    split = Split(
        medfee_fen, fulamt_fen, overlmt_fen, preselfpay_fen, inscp_fen,  # the bill and its four parts
        act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen,  # deductible, fund
        psn_part_fen, 0, acct_pay_fen, psn_part_fen - acct_pay_fen,  # person, hospital, account, cash
        acct_balc_fen - acct_pay_fen, line_splits,  # the account's balance after, the lines
    )
    assert not split.identity_errors(), split.identity_errors()
    assert split.balc_fen >= 0
    return split


@cython.locals(accumulators=Accumulators, split=Split, after=Accumulators)
def accumulate(accumulators: Accumulators, split: Split) -> Accumulators:
    """The person's state after a split (a reversal's split is negative)."""
    after = Accumulators(
        dedc_used_fen=accumulators.dedc_used_fen + split.act_pay_dedc_fen,
        fund_paid_fen=accumulators.fund_paid_fen + split.hifp_pay_fen,
        acct_balc_fen=accumulators.acct_balc_fen - split.acct_pay_fen,
    )
    assert after.acct_balc_fen >= 0, "a personal account never goes below zero"
    return after

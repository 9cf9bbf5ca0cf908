"""Totals reconciliation (3201): an institution's counts and sums against the platform's."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StmtResult(enum.IntEnum):
    """The national stmt_rslt codes."""

    BALANCED = 0
    PLATFORM_MORE = 1
    INSTITUTION_MORE = 2
    INCONSISTENT = 3


@dataclass(frozen=True, slots=True)
class Totals:
    setl_cnt: int
    medfee_sumamt_fen: int
    fund_pay_sumamt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int


def compare_totals(platform: Totals, institution: Totals) -> StmtResult:
    """Equal: balanced. Otherwise the side with more records has more; the
    same count with other sums is inconsistent."""
    if platform == institution:
        return StmtResult.BALANCED
    if platform.setl_cnt > institution.setl_cnt:
        return StmtResult.PLATFORM_MORE
    if institution.setl_cnt > platform.setl_cnt:
        return StmtResult.INSTITUTION_MORE
    return StmtResult.INCONSISTENT

"""The clearing store's period reads on a real SQLite ledger holding several
months: a period's sums are that month's alone, no period means all time,
and the prepaid funds add up every month, the first and the last included."""

from __future__ import annotations

import datetime as dt

from medsettle.ledger.clearing.netting import prepay_postings
from medsettle.ledger.clearing.store import ClearingStore
from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.posting.rules import settlement_postings

# (period, fund part in fen) of a Shenzhen-insured visit treated in Guangzhou, month by month
CROSS_REGION_VISITS = [("2026-08", 10_000), ("2026-09", 20_000), ("2026-10", 40_000)]
# (period, agency, amount in fen) paid into the prepaid funds
PREPAYMENTS = [("2026-07", "440300", 1_000), ("2026-09", "440300", 2_000), ("2026-11", "440600", 4_000)]


def month_start(period: str) -> dt.datetime:
    year, month = (int(part) for part in period.split("-"))
    return dt.datetime(year, month, 1, 12, tzinfo=CHINA_TZ)


def build_ledger(path) -> ClearingStore:
    store = ClearingStore(path)
    with store.posting():
        for n, (period, fund_fen) in enumerate(CROSS_REGION_VISITS):
            postings = settlement_postings("440300", "440100", "H44010100001", fund_fen, 0)
            store.append_entry(f"S{n}", "settle", period, month_start(period), postings)
        for period, agency, amount_fen in PREPAYMENTS:
            store.append_entry(f"PREPAY-{agency}-{period}", "prepay", period, month_start(period),
                               prepay_postings("44", agency, amount_fen))
    return store


def test_a_period_sums_its_own_month_and_no_period_sums_all_time(tmp_path) -> None:
    store = build_ledger(tmp_path / "ledger.db")
    try:
        for period, fund_fen in CROSS_REGION_VISITS:
            assert store.settlement_agency_balances(period) == {
                ("440100", "receivable:agency:440300"): fund_fen,
                ("440300", "payable:agency:440100"): -fund_fen,
            }
        total_fen = sum(fund_fen for _, fund_fen in CROSS_REGION_VISITS)
        assert store.settlement_agency_balances(None) == {
            ("440100", "receivable:agency:440300"): total_fen,
            ("440300", "payable:agency:440100"): -total_fen,
        }
        assert store.settlement_agency_balances("2026-07") == {}  # only a prepayment that month
    finally:
        store.close()


def test_prepaid_funds_count_every_month_from_the_first_to_the_last(tmp_path) -> None:
    store = build_ledger(tmp_path / "ledger.db")
    try:
        assert store.prepaid_balances("44") == {"440300": 3_000, "440600": 4_000}
    finally:
        store.close()

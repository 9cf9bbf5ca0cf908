"""The demo of ./scripts/run.sh: a few real bills through a running server, over gRPC.

msgids are fixed, so running the demo again on the same database shows the
idempotent answers (same setl_id, nothing settled twice)."""

from __future__ import annotations

from typing import Callable

from rich.console import Console
from rich.table import Table

from medsettle.client.settlement_client import CallRefused, SettlementClient
from medsettle.ledger.money import yuan
from medsettle.v1 import settlement_pb2 as pb

OUTPATIENT, INPATIENT = pb.VISIT_TYPE_OUTPATIENT, pb.VISIT_TYPE_INPATIENT


def _bill(msgid: str, code: str, psn_no: str, insutype: int, insuplc: str, visit: int,
          lines: list[tuple[str, int, int]], acct: bool = True) -> pb.SettleRequest:
    return pb.SettleRequest(
        msgid=msgid, fixmedins_code=code, psn_no=psn_no, insutype=insutype,  # type: ignore[arg-type]
        insuplc_admdvs=insuplc, visit_type=visit, acct_used_flag=acct,  # type: ignore[arg-type]
        fee_lines=[pb.FeeLine(feedetl_sn=str(i + 1), hilist_code=c, cnt=n, pric_fen=p) for i, (c, n, p) in enumerate(lines)],
    )


DEMO_BILLS = [
    ("Hebei worked example (local)", _bill(
        "DEMO-HEBEI-0001", "H13010100001", "13010000000000000001", 310, "130100", OUTPATIENT,
        [("XB0202", 1, 452)])),
    ("Guangzhou outpatient (local)", _bill(
        "DEMO-GZ-OUT-0001", "H44010100001", "44010000000000000001", 310, "440100", OUTPATIENT,
        [("S0001", 1, 2500), ("XA0101", 2, 2300), ("XB0201", 1, 4500), ("XC0401", 1, 6800)])),
    ("Shenzhen insured, Guangzhou inpatient (in-province)", _bill(
        "DEMO-SZ-INP-0001", "H44010100001", "44030000000000000001", 310, "440300", INPATIENT,
        [("S0003", 5, 6000), ("S0004", 1, 280000), ("C0001", 1, 52000), ("S0005", 5, 10000)])),
    ("Shanghai insured, Guangzhou outpatient (cross-province)", _bill(
        "DEMO-SH-OUT-0001", "H44010100001", "31010000000000000001", 310, "310100", OUTPATIENT,
        [("S0001", 1, 2500), ("S0002", 1, 38000), ("XB0303", 2, 17500)])),
]


# A pharmacy sale naming an e-prescription no institution issued: refused (RX_UNKNOWN).
INVENTED_RX_SALE = _bill("DEMO-RX-0001", "P44030100001", "44010000000000000001", 310, "440100", pb.VISIT_TYPE_PHARMACY,
                         [("XA0102", 2, 1500)])
INVENTED_RX_SALE.rx_id, INVENTED_RX_SALE.prescribing_fixmedins_code = "RX-INVENTED-0001", "H44010100901"


def demo_institutions() -> list[str]:
    """The institutions the demo acts for (each with a credential of its own)."""
    return sorted({bill.fixmedins_code for _, bill in DEMO_BILLS} | {INVENTED_RX_SALE.fixmedins_code})


AMOUNT_ROWS = (
    "medfee_sumamt_fen", "fulamt_ownpay_amt_fen", "overlmt_selfpay_fen", "preselfpay_amt_fen",
    "inscp_scp_amt_fen", "act_pay_dedc_fen", "fund_pay_sumamt_fen", "acct_pay_fen",
    "psn_cash_pay_fen", "balc_fen",
)


def _split_table(rows: list[tuple[str, pb.SettleResult]]) -> Table:
    """One column per bill, one row per amount (yuan)."""
    table = Table(title="Settlements (yuan)")
    table.add_column("")
    for i in range(len(rows)):
        table.add_column(f"#{i + 1}", justify="right")
    table.add_row("setl_id", *[r.setl_id or "(none)" for _, r in rows])
    table.add_row("pay_loc", *[pb.PayLoc.Name(r.pay_loc).removeprefix("PAY_LOC_").lower() for _, r in rows])
    for name in AMOUNT_ROWS:
        table.add_row(name.removesuffix("_fen"), *[yuan(getattr(r, name)) for _, r in rows])
    return table


def _expect_refusal(console: Console, label: str, call: Callable[[], object]) -> None:
    try:
        call()
    except CallRefused as refused:
        fields = ", ".join(f for f, _ in refused.field_violations)
        rule = refused.metadata.get("rule", "")
        console.print(f"  {label}: [bold]{refused.code.name}[/] {refused.reason}" + (f" {rule}" if rule else "")
                      + (f" (fields: {fields})" if fields else ""))
    else:
        raise AssertionError(f"{label}: expected a refusal")


def run_demo(client: SettlementClient, console: Console) -> list[pb.SettleResult]:
    """Settles the demo bills and shows retries, a reversal and refusals."""
    rows = []
    for label, bill in DEMO_BILLS:
        rows.append((label, client.settle(bill)))
    pre = client.pre_settle(DEMO_BILLS[1][1])
    rows.append(("pre-settle of bill #2 again (nothing stored)", pre))
    for i, (label, _) in enumerate(rows):
        console.print(f"  #{i + 1} {label}")
    console.print(_split_table(rows))

    console.print("Idempotency and reversal:")
    label, first_bill = DEMO_BILLS[1]
    retry = client.settle(first_bill)
    console.print(f"  retry of {first_bill.msgid}: same setl_id {retry.setl_id} = {rows[1][1].setl_id}: {retry == rows[1][1]}")
    conflicting = pb.SettleRequest()
    conflicting.CopyFrom(first_bill)
    conflicting.fee_lines[0].cnt = 2
    _expect_refusal(console, "same msgid, other bill", lambda: client.settle(conflicting))
    cross = rows[3][1]
    reversal = client.reverse("DEMO-SH-REV-0001", cross.fixmedins_code, cross.setl_id)
    console.print(f"  reversal {reversal.setl_id} of {cross.setl_id}: fund {yuan(reversal.fund_pay_sumamt_fen)}, "
                  f"account {yuan(reversal.acct_pay_fen)}, balance back to {yuan(reversal.balc_fen)}")
    _expect_refusal(console, "reverse it again", lambda: client.reverse("DEMO-SH-REV-0002", cross.fixmedins_code, cross.setl_id))
    _expect_refusal(console, "reverse the reversal", lambda: client.reverse("DEMO-SH-REV-0003", cross.fixmedins_code, reversal.setl_id))
    bad = pb.SettleRequest()
    bad.CopyFrom(first_bill)
    bad.msgid, bad.insuplc_admdvs, bad.fee_lines[1].cnt = "DEMO-BAD-0001", "44", 0
    _expect_refusal(console, "malformed bill", lambda: client.settle(bad))
    _expect_refusal(console, "pharmacy sale on an invented e-prescription", lambda: client.settle(INVENTED_RX_SALE))
    return [r for _, r in rows] + [reversal]

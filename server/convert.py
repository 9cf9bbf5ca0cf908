"""Protobuf messages <-> domain values. No rules here, only shapes."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from medsettle.ledger.reconcile import Totals
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType
from medsettle.v1 import settlement_pb2 as pb


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def bill_from_pb(request: pb.SettleRequest) -> Bill:
    try:
        visit_type = VisitType(request.visit_type)
    except ValueError:
        visit_type = request.visit_type  # type: ignore[assignment]  # refused by validation, naming the field
    return Bill(
        msgid=request.msgid,
        fixmedins_code=request.fixmedins_code,
        psn_no=request.psn_no,
        insutype=request.insutype,
        insuplc_admdvs=request.insuplc_admdvs,
        visit_type=visit_type,
        fee_lines=tuple(
            FeeLine(line.feedetl_sn, line.hilist_code, line.cnt, line.pric_fen) for line in request.fee_lines
        ),
        acct_used_flag=request.acct_used_flag,
        diag_code=request.diag_code,
        prior_offline_diag_date=request.prior_offline_diag_date,
        rx_id=request.rx_id,
        prescribing_fixmedins_code=request.prescribing_fixmedins_code,
        delivery_fee_fen=request.delivery_fee_fen,
        ecert_token=request.ecert_token,
    )


def result_pb(s: Settlement) -> pb.SettleResult:
    split = s.split
    # Seconds and nanos computed here: Timestamp.FromDatetime is pure Python
    # and costs five times as much, once per answered settlement.
    since_epoch = s.setl_time - _EPOCH
    setl_time = Timestamp(seconds=since_epoch.days * 86_400 + since_epoch.seconds, nanos=since_epoch.microseconds * 1_000)
    return pb.SettleResult(
        setl_id=s.setl_id,
        msgid=s.msgid,
        fixmedins_code=s.fixmedins_code,
        psn_no=s.psn_no,
        insutype=s.insutype,  # type: ignore[arg-type]
        insuplc_admdvs=s.insuplc_admdvs,
        mdtrtarea_admvs=s.mdtrtarea_admvs,
        clr_type=int(s.clr_type),  # type: ignore[arg-type]
        pay_loc=int(s.pay_loc),  # type: ignore[arg-type]
        kind=int(s.kind),  # type: ignore[arg-type]
        orig_setl_id=s.orig_setl_id,
        setl_time=setl_time,
        setlym=s.setlym,
        medfee_sumamt_fen=split.medfee_sumamt_fen,
        fulamt_ownpay_amt_fen=split.fulamt_ownpay_amt_fen,
        overlmt_selfpay_fen=split.overlmt_selfpay_fen,
        preselfpay_amt_fen=split.preselfpay_amt_fen,
        inscp_scp_amt_fen=split.inscp_scp_amt_fen,
        act_pay_dedc_fen=split.act_pay_dedc_fen,
        hifp_pay_fen=split.hifp_pay_fen,
        fund_pay_sumamt_fen=split.fund_pay_sumamt_fen,
        psn_part_amt_fen=split.psn_part_amt_fen,
        hosp_part_amt_fen=split.hosp_part_amt_fen,
        acct_pay_fen=split.acct_pay_fen,
        psn_cash_pay_fen=split.psn_cash_pay_fen,
        balc_fen=split.balc_fen,
        line_splits=[
            pb.LineSplit(
                feedetl_sn=ls.feedetl_sn,
                chrgitm_lv=int(ls.category),  # type: ignore[arg-type]
                det_item_fee_sumamt_fen=ls.det_item_fee_sumamt_fen,
                fulamt_ownpay_amt_fen=ls.fulamt_ownpay_amt_fen,
                overlmt_selfpay_fen=ls.overlmt_selfpay_fen,
                preselfpay_amt_fen=ls.preselfpay_amt_fen,
                inscp_scp_amt_fen=ls.inscp_scp_amt_fen,
            )
            for ls in split.line_splits
        ],
        audit_flags=list(s.audit_flags),
    )


def totals_from_pb(totals: pb.Totals) -> Totals:
    return Totals(
        totals.setl_cnt, totals.medfee_sumamt_fen, totals.fund_pay_sumamt_fen,
        totals.acct_pay_fen, totals.psn_cash_pay_fen,
    )


def totals_pb(totals: Totals) -> pb.Totals:
    return pb.Totals(
        setl_cnt=totals.setl_cnt,
        medfee_sumamt_fen=totals.medfee_sumamt_fen,
        fund_pay_sumamt_fen=totals.fund_pay_sumamt_fen,
        acct_pay_fen=totals.acct_pay_fen,
        psn_cash_pay_fen=totals.psn_cash_pay_fen,
    )

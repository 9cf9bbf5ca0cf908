"""Protobuf messages <-> domain values. No rules here, only shapes."""

from __future__ import annotations

import datetime as dt

from medsettle.ledger.reconcile import Totals
from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS,
    Bill,
    ClrType,
    FeeLine,
    LineSplit,
    PayLoc,
    Prescription,
    Settlement,
    SettlementKind,
    Split,
    VisitType,
)
from medsettle.v1 import settlement_pb2 as pb


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


_VISIT_TYPES = {int(v): v for v in VisitType}


def bill_from_pb(request: pb.SettleRequest) -> Bill:
    # An unknown visit type stays a plain int: refused by validation, naming the field.
    visit_type = _VISIT_TYPES.get(request.visit_type, request.visit_type)
    # Positional, in Bill's field order (runs once per request); ecert_nonce and ecert_expires_us
    # keep their defaults: the service fills them from the verified certificate.
    return Bill(
        request.msgid,
        request.fixmedins_code,
        request.psn_no,
        request.insutype,
        request.insuplc_admdvs,
        visit_type,  # type: ignore[arg-type]
        tuple([FeeLine(line.feedetl_sn, line.hilist_code, line.cnt, line.pric_fen) for line in request.fee_lines]),
        request.acct_used_flag,
        request.diag_code,
        request.prior_offline_diag_date,
        request.rx_id,
        request.prescribing_fixmedins_code,
        request.delivery_fee_fen,
        request.ecert_token,
        prescription=prescription_from_pb(request.prescription) if request.HasField("prescription") else None,
        pharmacist_id=request.pharmacist_id,
    )


def bill_pb(bill: Bill) -> pb.SettleRequest:
    """The request a bill comes from (bill_from_pb(bill_pb(b)) == b for a bill
    as received: its ecert_nonce and ecert_expires_us are not sent, the
    service fills them). The JSON gateway sends its bills to the writer so."""
    request = pb.SettleRequest(
        msgid=bill.msgid, fixmedins_code=bill.fixmedins_code, psn_no=bill.psn_no, insutype=bill.insutype,  # type: ignore[arg-type]
        insuplc_admdvs=bill.insuplc_admdvs, visit_type=int(bill.visit_type),  # type: ignore[arg-type]
        fee_lines=[pb.FeeLine(feedetl_sn=line.feedetl_sn, hilist_code=line.hilist_code, cnt=line.cnt, pric_fen=line.pric_fen)
                   for line in bill.fee_lines],
        acct_used_flag=bill.acct_used_flag, diag_code=bill.diag_code, prior_offline_diag_date=bill.prior_offline_diag_date,
        rx_id=bill.rx_id, prescribing_fixmedins_code=bill.prescribing_fixmedins_code,
        delivery_fee_fen=bill.delivery_fee_fen, ecert_token=bill.ecert_token, pharmacist_id=bill.pharmacist_id,
    )
    if bill.prescription is not None:
        rx = bill.prescription
        request.prescription.CopyFrom(pb.Prescription(
            rx_id=rx.rx_id, prescriber_id=rx.prescriber_id, valid_days=rx.valid_days,
            items=[pb.PrescribedItem(hilist_code=code, cnt=cnt) for code, cnt in rx.items]))
    return request


def prescription_from_pb(rx: pb.Prescription) -> Prescription:
    return Prescription(rx.rx_id, rx.prescriber_id, tuple((item.hilist_code, item.cnt) for item in rx.items), rx.valid_days)


# SettleResult's amount fields, in Split.amounts() order, then the balance.
_RESULT_AMOUNTS = (*AMOUNT_FIELDS, "balc_fen")


def result_pb(s: Settlement) -> pb.SettleResult:
    """Once per answered settlement, so built the cheap way (upb): the enums
    passed as the IntEnums they are (ints), setl_time as a dict of seconds
    and nanos (Timestamp.FromDatetime is pure Python and costs five times as
    much, a Timestamp message is built and then copied), each line split
    added in place rather than built and copied, an amount of 0 not passed
    (proto3: a scalar at its default is not set, and each field set costs
    upb a lookup by name), audit flags only when any. The message is equal
    to one built field by field."""
    split = s.split
    since_epoch = s.setl_time - _EPOCH
    fields = {
        "setl_id": s.setl_id,
        "msgid": s.msgid,
        "fixmedins_code": s.fixmedins_code,
        "psn_no": s.psn_no,
        "insutype": s.insutype,
        "insuplc_admdvs": s.insuplc_admdvs,
        "mdtrtarea_admvs": s.mdtrtarea_admvs,
        "clr_type": s.clr_type,
        "pay_loc": s.pay_loc,
        "kind": s.kind,
        "orig_setl_id": s.orig_setl_id,
        "setl_time": {"seconds": since_epoch.days * 86_400 + since_epoch.seconds,
                      "nanos": since_epoch.microseconds * 1_000},
        "setlym": s.setlym,
    }
    for name, amount in zip(_RESULT_AMOUNTS, (*split.amounts(), split.balc_fen)):
        if amount:
            fields[name] = amount
    if s.payee_code:
        fields["payee_code"] = s.payee_code
    result = pb.SettleResult(**fields)
    add_line = result.line_splits.add
    for ls in split.line_splits:
        line = {"feedetl_sn": ls.feedetl_sn, "chrgitm_lv": ls.category,
                "det_item_fee_sumamt_fen": ls.det_item_fee_sumamt_fen}
        if ls.fulamt_ownpay_amt_fen:
            line["fulamt_ownpay_amt_fen"] = ls.fulamt_ownpay_amt_fen
        if ls.overlmt_selfpay_fen:
            line["overlmt_selfpay_fen"] = ls.overlmt_selfpay_fen
        if ls.preselfpay_amt_fen:
            line["preselfpay_amt_fen"] = ls.preselfpay_amt_fen
        if ls.inscp_scp_amt_fen:
            line["inscp_scp_amt_fen"] = ls.inscp_scp_amt_fen
        add_line(**line)
    if s.audit_flags:
        result.audit_flags.extend(s.audit_flags)
    return result


def settlement_from_pb(result: pb.SettleResult) -> Settlement:
    """The settlement a result was built from (result_pb's inverse)."""
    line_splits = tuple(
        LineSplit(ls.feedetl_sn, Category(ls.chrgitm_lv), ls.det_item_fee_sumamt_fen, ls.fulamt_ownpay_amt_fen,
                  ls.overlmt_selfpay_fen, ls.preselfpay_amt_fen, ls.inscp_scp_amt_fen)
        for ls in result.line_splits
    )
    split = Split(
        result.medfee_sumamt_fen, result.fulamt_ownpay_amt_fen, result.overlmt_selfpay_fen, result.preselfpay_amt_fen,
        result.inscp_scp_amt_fen, result.act_pay_dedc_fen, result.hifp_pay_fen, result.fund_pay_sumamt_fen,
        result.psn_part_amt_fen, result.hosp_part_amt_fen, result.acct_pay_fen, result.psn_cash_pay_fen,
        result.balc_fen, line_splits,
    )
    at = result.setl_time
    setl_time = _EPOCH + dt.timedelta(seconds=at.seconds, microseconds=at.nanos // 1_000)
    return Settlement(
        result.setl_id, result.msgid, result.fixmedins_code, result.psn_no, result.insutype, result.insuplc_admdvs,
        result.mdtrtarea_admvs, ClrType(result.clr_type), PayLoc(result.pay_loc), SettlementKind(result.kind),
        result.orig_setl_id, setl_time, result.setlym, split, tuple(result.audit_flags), result.payee_code,
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

"""A SettleRequest as the national interface's envelope, for clients of the
JSON gateway (the demo, the load generator): amounts in yuan as strings
(exact), field names as the gateway reads them (docs/gateway.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.money import yuan
from medsettle.v1 import settlement_pb2 as pb

ENDPOINT = "/fsi/api/rsfComIfsService/callService"
SETTLE_INFNO = "2207"


def settle_envelope(bill: pb.SettleRequest, infno: str = SETTLE_INFNO, inf_time: dt.datetime | None = None) -> dict[str, Any]:
    """The 2207 (or 2206) envelope of a bill. inf_time is written in China
    Standard Time, as the national platform reads it: an aware time is
    converted, a naive one is taken as China time already; by default, now."""
    data: dict[str, Any] = {
        "psn_no": bill.psn_no, "insutype": int(bill.insutype), "insuplc_admdvs": bill.insuplc_admdvs,
        "visit_type": int(bill.visit_type), "acct_used_flag": "1" if bill.acct_used_flag else "0",
    }
    for name in ("diag_code", "prior_offline_diag_date", "rx_id", "prescribing_fixmedins_code", "ecert_token"):
        if getattr(bill, name):
            data[name] = getattr(bill, name)
    if bill.delivery_fee_fen:
        data["delivery_fee"] = yuan(bill.delivery_fee_fen)
    return {
        "infno": infno, "msgid": bill.msgid, "fixmedins_code": bill.fixmedins_code,
        "mdtrtarea_admvs": "", "insuplc_admdvs": bill.insuplc_admdvs, "recer_sys_code": "MEDSETTLE", "infver": "V1.0",
        "opter_type": "1", "opter": "1", "opter_name": "medsettle client",
        "inf_time": _china_wall_time(inf_time), "fixmedins_name": "", "sign_no": "",
        "input": {"data": data, "feedetail": [
            {"feedetl_sn": line.feedetl_sn, "hilist_code": line.hilist_code, "cnt": line.cnt, "pric": yuan(line.pric_fen)}
            for line in bill.fee_lines]},
    }


def _china_wall_time(at: dt.datetime | None) -> str:
    if at is None:
        at = dt.datetime.now(CHINA_TZ)
    elif at.tzinfo is not None:
        at = at.astimezone(CHINA_TZ)
    return at.strftime("%Y-%m-%d %H:%M:%S")

"""The national interface's JSON envelope <-> the service layer's values.
Pure: no I/O, no HTTP; shapes only (the service checks the rules).

A request is `{"infno": ..., "msgid": ..., "fixmedins_code": ..., ...,
"input": {...}}`; `infno` chooses the interface. Fields inside `input` use
the names SettleRequest uses, amounts in yuan without the `_fen` suffix.
A refusal names each field as the gRPC error details name it
(`fee_lines[0].pric_fen`) and where it is in the envelope
(`input.feedetail[0].pric`): see envelope_path.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.errors import FieldViolation, Refused, invalid
from medsettle.ledger.money import MAX_AMOUNT_FEN
from medsettle.ledger.reconcile import StmtResult, Totals
from medsettle.ledger.settlement.model import AMOUNT_FIELDS, Bill, FeeLine, Settlement, VisitType
from medsettle.ledger.service import MAX_LIST_LIMIT
from medsettle.ledger.settlement.validation import MAX_FEE_LINES, bill_violations
from medsettle.server.gateway.yuan import NotYuan, Yuan, fen_of_yuan

PRE_SETTLE, SETTLE, REVERSE, LOOKUP, RECONCILE_TOTALS, RECONCILE_DETAILS = "2206", "2207", "2208", "5203", "3201", "3202"
INTERFACES = {
    PRE_SETTLE: "pre-settle: the split, nothing stored",
    SETTLE: "settle: split and record; idempotent on (fixmedins_code, msgid)",
    REVERSE: "reverse a settlement: exact contra-entries",
    LOOKUP: "one settlement or reversal, by setl_id or by the msgid that made it",
    RECONCILE_TOTALS: "totals reconciliation of a month and clearing type (stmt_rslt 0/1/2/3)",
    RECONCILE_DETAILS: "detail reconciliation: the platform's settlements of a month, a page at a time",
}
WRITES = frozenset({PRE_SETTLE, SETTLE, REVERSE})  # the interfaces an operator credential may not call

MAX_PAGE_SIZE = 1_000  # 3202: settlements per answer
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_NUM = 100_000
MAX_SHOWN = 40  # characters of a bad value echoed back
HEADER_FIELDS = ("infno", "msgid", "fixmedins_code", "request")  # "request": the body as a whole
_DATA_RENAMED = {"institution_totals.setl_cnt": "fixmedins_setl_cnt"}
_LINE_FIELD = re.compile(r"^fee_lines(\[[0-9]+\])?(\.[a-z_]+)?\Z")
_STMT_TEXT = {
    StmtResult.BALANCED: "balanced",
    StmtResult.PLATFORM_MORE: "the platform has more settlements",
    StmtResult.INSTITUTION_MORE: "the institution has more settlements",
    StmtResult.INCONSISTENT: "same count, different sums",
}


def envelope_path(field: str) -> str:
    """Where a field the service names (as gRPC names it) is in the envelope."""
    if field in HEADER_FIELDS or field == "input" or field.startswith("input."):
        return field
    if match := _LINE_FIELD.match(field):
        index, name = match.group(1) or "", (match.group(2) or "").removesuffix("_fen")
        return f"input.feedetail{index}{name}"
    if field.startswith("institution_totals."):
        field = _DATA_RENAMED.get(field, field.removeprefix("institution_totals."))
    return "input.data." + field.removesuffix("_fen")


@dataclass(frozen=True, slots=True)
class Envelope:
    infno: str
    msgid: str
    fixmedins_code: str
    input: dict[str, Any]


def parse_envelope(body: object) -> Envelope:
    """The envelope's header and input, or FIELD_INVALID naming what is wrong.
    msgid and fixmedins_code are checked as the service checks them, later."""
    if not isinstance(body, dict):
        raise invalid([FieldViolation("request", f"must be a JSON object, got {_type_name(body)}")])
    out: list[FieldViolation] = []
    reader = _Reader(body, out)
    infno = reader.text("infno")
    if infno not in INTERFACES and not any(v.field == "infno" for v in out):
        out.append(FieldViolation("infno", f"must be one of {', '.join(INTERFACES)}, got {infno[:MAX_SHOWN]!r}"))
    msgid, code = reader.text("msgid"), reader.text("fixmedins_code")
    data = body.get("input")
    if not isinstance(data, dict):
        out.append(FieldViolation("input", f"must be an object, got {_type_name(data)}"))
    _refuse(out)
    return Envelope(infno, msgid, code, data)  # type: ignore[arg-type]


# ---- requests ---------------------------------------------------------------------
def bill_of(envelope: Envelope) -> Bill:
    """The bill of a 2206 or 2207: input.data and input.feedetail."""
    out: list[FieldViolation] = []
    data = _data(envelope, out)
    _same_as_header(data, envelope, out)
    lines = _fee_lines(envelope.input.get("feedetail"), out)
    bill = Bill(
        envelope.msgid,
        envelope.fixmedins_code,
        data.text("psn_no"),
        data.integer("insutype"),
        data.text("insuplc_admdvs"),
        data.visit_type("visit_type"),  # type: ignore[arg-type]
        lines,
        data.flag("acct_used_flag"),
        data.text("diag_code"),
        data.text("prior_offline_diag_date"),
        data.text("rx_id"),
        data.text("prescribing_fixmedins_code"),
        data.fen("delivery_fee_fen"),
        data.text("ecert_token"),
    )
    if out:  # the service's own checks of the rest, so that every bad field is listed at once
        named = {v.field for v in out}
        out += [v for v in bill_violations(bill, person_from_token=bool(bill.ecert_token))
                if v.field not in named and v.field.partition(".")[0] not in named]
    _refuse(out)
    return bill


def reversal_of(envelope: Envelope) -> str:
    """The setl_id a 2208 reverses (its own msgid is the envelope's)."""
    out: list[FieldViolation] = []
    data = _data(envelope, out)
    setl_id = data.text("setl_id")
    _refuse(out)
    return setl_id


def lookup_of(envelope: Envelope) -> tuple[str, str]:
    """(setl_id, msgid) of a 5203: exactly one given (the service checks which)."""
    out: list[FieldViolation] = []
    data = _data(envelope, out)
    found = data.text("setl_id"), data.text("msgid")
    _refuse(out)
    return found


def totals_query_of(envelope: Envelope) -> tuple[str, int, Totals]:
    """(setlym, clr_type, the institution's totals) of a 3201. Sums may be
    negative (a period's reversals of an earlier period's settlements)."""
    out: list[FieldViolation] = []
    data = _data(envelope, out)
    setlym, clr_type = data.text("setlym"), data.integer("clr_type")
    totals = Totals(
        data.integer("institution_totals.setl_cnt", required=True),
        *(data.fen(f"institution_totals.{name}", required=True, negative=True)
          for name in ("medfee_sumamt_fen", "fund_pay_sumamt_fen", "acct_pay_fen", "psn_cash_pay_fen")),
    )
    _refuse(out)
    return setlym, clr_type, totals


def details_query_of(envelope: Envelope) -> tuple[str, int, int, int]:
    """(setlym, clr_type (0: all), page_num, page_size) of a 3202."""
    out: list[FieldViolation] = []
    data = _data(envelope, out)
    setlym, clr_type = data.text("setlym"), data.integer("clr_type")
    page_num, page_size = data.integer("page_num", default=1), data.integer("page_size", default=DEFAULT_PAGE_SIZE)
    if not 1 <= page_num <= MAX_PAGE_NUM:
        out.append(FieldViolation("page_num", f"must be 1..{MAX_PAGE_NUM}, got {page_num}"))
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        out.append(FieldViolation("page_size", f"must be 1..{MAX_PAGE_SIZE}, got {page_size}"))
    elif page_num * page_size >= MAX_LIST_LIMIT:
        out.append(FieldViolation("page_num", f"page_num x page_size must be below {MAX_LIST_LIMIT}"))
    _refuse(out)
    return setlym, clr_type, page_num, page_size


def _data(envelope: Envelope, out: list[FieldViolation]) -> _Reader:
    data = envelope.input.get("data", {})
    if not isinstance(data, dict):
        out.append(FieldViolation("input.data", f"must be an object, got {_type_name(data)}"))
        data = {}
    return _Reader(data, out)


def _same_as_header(data: _Reader, envelope: Envelope, out: list[FieldViolation]) -> None:
    """input.data may repeat msgid and fixmedins_code (SettleRequest has them), but not contradict the header."""
    for name, header in (("msgid", envelope.msgid), ("fixmedins_code", envelope.fixmedins_code)):
        given = data.text(name)
        if given and given != header:
            out.append(FieldViolation(f"input.data.{name}", f"must equal the envelope's {name} when given"))


def _fee_lines(given: object, out: list[FieldViolation]) -> tuple[FeeLine, ...]:
    if given is None:
        return ()  # the service refuses a bill without lines, naming fee_lines
    if not isinstance(given, list):
        out.append(FieldViolation("fee_lines", f"must be an array, got {_type_name(given)}"))
        return ()
    if len(given) > MAX_FEE_LINES:  # the service names this too; not worth reading 10^5 lines first
        out.append(FieldViolation("fee_lines", f"must have 1..{MAX_FEE_LINES} lines, got {len(given)}"))
        return ()
    lines = []
    for i, item in enumerate(given):
        where = f"fee_lines[{i}]"
        if not isinstance(item, dict):
            out.append(FieldViolation(where, f"must be an object, got {_type_name(item)}"))
            lines.append(FeeLine("", "", 0, 0))  # keeps the later lines' indices; refused anyway
            continue
        line = _Reader(item, out, prefix=f"{where}.")
        code = line.text("hilist_code")
        synonym = line.text("med_list_codg")  # the national name of the same code
        if code and synonym and code != synonym:
            out.append(FieldViolation(f"{where}.hilist_code", "hilist_code and med_list_codg differ; give one"))
        lines.append(FeeLine(line.text("feedetl_sn", numbers=True), code or synonym, line.integer("cnt"), line.fen("pric_fen")))
    return tuple(lines)


class _Reader:
    """Reads typed fields of one JSON object, adding a violation per bad one
    (named as gRPC names it: prefix + name) and a neutral value in its place."""

    def __init__(self, obj: dict[str, Any], out: list[FieldViolation], prefix: str = "") -> None:
        self._obj, self._out, self._prefix = obj, out, prefix

    def _get(self, name: str) -> Any:
        key = _DATA_RENAMED.get(name, name.removeprefix("institution_totals.")).removesuffix("_fen")
        if key == "psn_cash_pay" and key not in self._obj:
            return self._obj.get("cash_payamt")  # the national 3201 name
        return self._obj.get(key)

    def _bad(self, name: str, description: str) -> None:
        self._out.append(FieldViolation(self._prefix + name, description))

    def text(self, name: str, numbers: bool = False) -> str:
        value = self._get(name)
        if value is None:
            return ""
        if numbers and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self._bad(name, f"must be a string, got {_type_name(value)}")
            return ""
        if not _is_unicode_text(value):  # JSON lets "\ud800" through; no message field can hold it
            self._bad(name, "is not valid Unicode text (a lone surrogate)")
            return ""
        return value

    def integer(self, name: str, default: int = 0, required: bool = False) -> int:
        value = self._get(name)
        if value is None:
            if required:
                self._bad(name, "is required")
            return default
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value() and value.adjusted() < 18:
            return int(value)  # 1.0 is 1
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
            return int(value)  # the national interface often sends codes as strings: "310"
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self._bad(name, f"must be a whole number, got {_shown(value)}")
        return default

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if value in (0, 1, "0", "1"):
            return value in (1, "1")
        self._bad(name, f"must be true, false, 0, 1, \"0\" or \"1\", got {_shown(value)}")
        return False

    def visit_type(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, str) and value.removeprefix("VISIT_TYPE_") in VisitType.__members__:
            return VisitType[value.removeprefix("VISIT_TYPE_")]
        number = self.integer(name)
        return VisitType(number) if number in VisitType._value2member_map_ else number

    def fen(self, name: str, required: bool = False, negative: bool = False) -> int:
        """A yuan amount as fen. Fields whose bounds the service checks
        (prices, fees) are left to it; others are bounded here."""
        value = self._get(name)
        if value is None:
            if required:
                self._bad(name, "is required")
            return 0
        try:
            fen = fen_of_yuan(value)
        except NotYuan as error:
            self._bad(name, str(error))
            return 0
        if negative and abs(fen) > MAX_AMOUNT_FEN:
            self._bad(name, f"must be at most {MAX_AMOUNT_FEN // 100} yuan in size")
        return fen


def _shown(value: object) -> str:
    text = repr(str(value)) if isinstance(value, (str, Decimal)) else _type_name(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _is_unicode_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "an array", type(None): "null", str: "a string", int: "a number", Decimal: "a number"}
    return names.get(type(value), type(value).__name__)


def _refuse(out: list[FieldViolation]) -> None:
    if out:
        raise invalid(out)


# ---- answers -------------------------------------------------------------------
def settlement_output(s: Settlement) -> dict[str, Any]:
    """A settlement as `setlinfo` (its fields, amounts in yuan) and `setldetail` (its line splits)."""
    return {"setlinfo": setlinfo(s), "setldetail": [
        {
            "feedetl_sn": line.feedetl_sn,
            "chrgitm_lv": int(line.category),
            "det_item_fee_sumamt": Yuan(line.det_item_fee_sumamt_fen),
            "fulamt_ownpay_amt": Yuan(line.fulamt_ownpay_amt_fen),
            "overlmt_selfpay": Yuan(line.overlmt_selfpay_fen),
            "preselfpay_amt": Yuan(line.preselfpay_amt_fen),
            "inscp_scp_amt": Yuan(line.inscp_scp_amt_fen),
        }
        for line in s.split.line_splits
    ]}


def setlinfo(s: Settlement) -> dict[str, Any]:
    split = s.split
    info: dict[str, Any] = {
        "setl_id": s.setl_id, "msgid": s.msgid, "fixmedins_code": s.fixmedins_code, "psn_no": s.psn_no,
        "insutype": int(s.insutype), "insuplc_admdvs": s.insuplc_admdvs, "mdtrtarea_admvs": s.mdtrtarea_admvs,
        "clr_type": int(s.clr_type), "pay_loc": int(s.pay_loc), "kind": int(s.kind), "orig_setl_id": s.orig_setl_id,
        "setl_time": national_time(s.setl_time), "setlym": s.setlym,
    }
    for name in AMOUNT_FIELDS:
        info[name.removesuffix("_fen")] = Yuan(getattr(split, name))
    info["balc"] = Yuan(split.balc_fen)
    info["audit_flags"] = list(s.audit_flags)
    return info


def totals_output(setlym: str, clr_type: int, platform: Totals, result: StmtResult) -> dict[str, Any]:
    return {"stmtinfo": {
        "setlym": setlym, "clr_type": clr_type,
        "stmt_rslt": int(result), "stmt_rslt_dscr": _STMT_TEXT[result],
        "setl_cnt": platform.setl_cnt,
        "medfee_sumamt": Yuan(platform.medfee_sumamt_fen),
        "fund_pay_sumamt": Yuan(platform.fund_pay_sumamt_fen),
        "acct_pay": Yuan(platform.acct_pay_fen),
        "psn_cash_pay": Yuan(platform.psn_cash_pay_fen),
    }}


def details_output(page: Iterable[Settlement], page_num: int, page_size: int, more: bool) -> dict[str, Any]:
    return {"data": [setlinfo(s) for s in page], "page_num": page_num, "page_size": page_size, "has_more": more}


def national_time(at: dt.datetime) -> str:
    """yyyy-MM-dd HH:mm:ss in China time, as the national interface writes times."""
    return at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _stamp(at: dt.datetime) -> str:
    """yyyyMMddHHmmssSSS, China time: the envelope's refmsg_time and respond_time."""
    local = at.astimezone(CHINA_TZ)
    return local.strftime("%Y%m%d%H%M%S") + f"{local.microsecond // 1000:03d}"


def answer(msgid: str, output: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    """A success: infcode 0 with the output."""
    stamp = _stamp(at)
    return {"infcode": 0, "inf_refmsgid": msgid, "refmsg_time": stamp, "respond_time": stamp,
            "err_msg": None, "output": output}


def refusal_answer(msgid: str, reason: str, message: str, violations: Iterable[FieldViolation], at: dt.datetime,
                   max_shown: int, max_chars: int) -> dict[str, Any]:
    """A refusal: infcode -1; err_msg is the reason and each field at fault
    as gRPC names it (with its place in the envelope), at most max_shown of
    them in at most max_chars; err_detail the same, structured."""
    shown = list(violations)[:max_shown]
    if shown:
        text = f"{reason}: " + "; ".join(_violation_text(v) for v in shown)
    else:
        text = message if message.startswith(reason) else f"{reason}: {message}"
    if len(text) > max_chars:
        text = text[:max_chars] + "..."
    stamp = _stamp(at)
    return {
        "infcode": -1, "inf_refmsgid": msgid, "refmsg_time": stamp, "respond_time": stamp, "err_msg": text,
        "err_detail": {"reason": reason, "field_violations": [
            {"field": v.field, "envelope_field": envelope_path(v.field), "description": v.description} for v in shown
        ]},
        "output": None,
    }


def _violation_text(v: FieldViolation) -> str:
    where = envelope_path(v.field)
    return f"{v.field}: {v.description}" if where == v.field else f"{v.field} ({where}): {v.description}"


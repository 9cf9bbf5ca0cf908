"""Shape checks of a bill and a reversal: every bound explicit, every
violation names its field. Pure; the reference-data checks come later."""

# cython: nonecheck=True
from __future__ import annotations

import datetime as dt
import re

from medsettle.ledger.errors import FieldViolation
from medsettle.ledger.settlement.internet import followup_field_violations, prescription_field_violations
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:  # the values' C struct members, read where a local is declared of their type (model.pxd)
    from cython.cimports.medsettle.ledger.settlement.model import Bill, FeeLine

MAX_FEE_LINES = 500
MAX_CNT = 100_000
MAX_PRIC_FEN = 100_000_000  # 1 million yuan per unit
MAX_BILL_FEN = 100_000_000_000  # 1 billion yuan per bill
MAX_DELIVERY_FEE_FEN = 1_000_000  # 10,000 yuan
MAX_TEXT = 50
MAX_RX_ITEMS = 50
MAX_RX_VALID_DAYS = 365

# \Z, not $: "$" also matches before a trailing newline ("M1\n" would pass)
MSGID = re.compile(r"^[A-Za-z0-9_-]{1,30}\Z")
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,29}\Z")
PSN_NO = re.compile(r"^[A-Za-z0-9]{1,30}\Z")
ADMDVS = re.compile(r"^[0-9]{6}\Z")  # ASCII digits only: \d would accept full-width ones
SETL_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}\Z")
HILIST_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}\Z")
DIAG_CODE = re.compile(r"^[A-Za-z0-9.]{0,20}\Z")
RX_ID = re.compile(r"^[A-Za-z0-9_-]{0,40}\Z")
STAFF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,29}\Z")
INSUTYPES = (310, 390)


def _pattern(out: list[FieldViolation], name: str, value: str, pattern: re.Pattern[str], what: str,
             personal: bool = False) -> None:
    if not pattern.match(value):
        if personal:  # a person number is never echoed, not even a mistyped one
            out.append(FieldViolation(name, f"must be {what}, got {len(value)} characters (not shown)"))
            return
        shown = value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
        out.append(FieldViolation(name, f"must be {what}, got {shown!r}"))


def _bound(out: list[FieldViolation], name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        out.append(FieldViolation(name, f"must be {low}..{high}, got {value}"))


def check_msgid_and_code(out: list[FieldViolation], msgid: str, fixmedins_code: str) -> None:
    _pattern(out, "msgid", msgid, MSGID, "1-30 letters, digits, '-' or '_'")
    _pattern(out, "fixmedins_code", fixmedins_code, CODE, "an institution code of 1-30 characters")


def bill_violations(bill: Bill, person_from_token: bool = False) -> list[FieldViolation]:
    """All shape violations of a bill; empty when it is well-formed."""
    if _plainly_valid(bill, person_from_token):
        return []
    return _violations(bill, person_from_token)


_msgid_ok, _code_ok, _hilist_code_ok = MSGID.match, CODE.match, HILIST_CODE.match
_diag_code_ok, _rx_id_ok, _staff_id_ok = DIAG_CODE.match, RX_ID.match, STAFF_ID.match
# Visits the quick check takes; an internet follow-up (its own required fields) goes the long way.
_QUICK_VISITS = (VisitType.OUTPATIENT, VisitType.INPATIENT, VisitType.PHARMACY)


@cython.locals(bill=Bill, line=FeeLine)
def _plainly_valid(bill: Bill, person_from_token: bool) -> bool:
    """True only for a bill _violations finds nothing wrong with, checked
    without building a field path or a message (once per request). It may
    say False of a good bill (an e-prescription issued, a prior diagnosis
    date, a follow-up): the long way then checks it. An ASCII letters-and-
    digits text (str.isascii is O(1), then isalnum is exactly [A-Za-z0-9])
    matches each identifier pattern at its length without the regular
    expression, which costs about twice as much; any other text is matched."""
    msgid, code, psn_no, admdvs = bill.msgid, bill.fixmedins_code, bill.psn_no, bill.insuplc_admdvs
    rx_id, prescriber, diag_code = bill.rx_id, bill.prescribing_fixmedins_code, bill.diag_code
    if not ((len(msgid) <= 30 and msgid.isascii() and msgid.isalnum() or _msgid_ok(msgid))
            and (len(code) <= 30 and code.isascii() and code.isalnum() or _code_ok(code))
            and (person_from_token or (len(psn_no) <= 30 and psn_no.isascii() and psn_no.isalnum()))
            and bill.insutype in INSUTYPES
            and len(admdvs) == 6 and admdvs.isascii() and admdvs.isdigit()
            and bill.visit_type in _QUICK_VISITS
            and 0 <= bill.delivery_fee_fen <= MAX_DELIVERY_FEE_FEN
            and (not diag_code or _diag_code_ok(diag_code))
            and not bill.prior_offline_diag_date
            and (not rx_id or _rx_id_ok(rx_id))
            and (not prescriber or (rx_id and _code_ok(prescriber)))
            and (prescriber or not rx_id or bill.visit_type != VisitType.PHARMACY)
            and bill.prescription is None
            and (not bill.pharmacist_id or _staff_id_ok(bill.pharmacist_id))):
        return False
    lines = bill.fee_lines
    if not 1 <= len(lines) <= MAX_FEE_LINES:
        return False
    total_fen = bill.delivery_fee_fen
    for line in lines:
        cnt, pric_fen, sn, item = line.cnt, line.pric_fen, line.feedetl_sn, line.hilist_code
        if not (1 <= cnt <= MAX_CNT and 1 <= pric_fen <= MAX_PRIC_FEN
                and (len(sn) <= 30 and sn.isascii() and sn.isalnum() or _msgid_ok(sn))
                and (len(item) <= 50 and item.isascii() and item.isalnum() or _hilist_code_ok(item))):
            return False
        total_fen += cnt * pric_fen
    return total_fen <= MAX_BILL_FEN and (len(lines) == 1 or len({line.feedetl_sn for line in lines}) == len(lines))


def _violations(bill: Bill, person_from_token: bool) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    check_msgid_and_code(out, bill.msgid, bill.fixmedins_code)
    if not person_from_token:
        _pattern(out, "psn_no", bill.psn_no, PSN_NO, "1-30 letters or digits", personal=True)
    if bill.insutype not in INSUTYPES:
        out.append(FieldViolation("insutype", f"must be one of {INSUTYPES}, got {bill.insutype}"))
    _pattern(out, "insuplc_admdvs", bill.insuplc_admdvs, ADMDVS, "a 6-digit region code")
    if bill.visit_type not in VisitType.__members__.values():
        out.append(FieldViolation("visit_type", f"must be one of {[int(v) for v in VisitType]}, got {int(bill.visit_type)}"))
    _lines(out, bill)
    _bound(out, "delivery_fee_fen", bill.delivery_fee_fen, 0, MAX_DELIVERY_FEE_FEN)
    _pattern(out, "diag_code", bill.diag_code, DIAG_CODE, "an ICD-10 code of at most 20 characters")
    if bill.prior_offline_diag_date:
        try:
            dt.date.fromisoformat(bill.prior_offline_diag_date)
            if len(bill.prior_offline_diag_date) != 10:
                raise ValueError
        except ValueError:
            out.append(FieldViolation("prior_offline_diag_date", f"must be YYYY-MM-DD, got {bill.prior_offline_diag_date[:MAX_TEXT]!r}"))
    _pattern(out, "rx_id", bill.rx_id, RX_ID, "at most 40 letters, digits, '-' or '_'")
    if bill.prescribing_fixmedins_code:
        _pattern(out, "prescribing_fixmedins_code", bill.prescribing_fixmedins_code, CODE, "an institution code")
    out.extend(followup_field_violations(bill))
    out.extend(prescription_field_violations(bill))
    if bill.prescription is not None:
        _prescription(out, bill)
    if bill.pharmacist_id:
        _pattern(out, "pharmacist_id", bill.pharmacist_id, STAFF_ID, "a staff code of 1-30 characters")
    return out


def _prescription(out: list[FieldViolation], bill: Bill) -> None:
    """The shape of an e-prescription issued with the bill."""
    rx = bill.prescription
    assert rx is not None
    if bill.visit_type == VisitType.PHARMACY:
        out.append(FieldViolation("prescription", "a pharmacy sale fills a prescription (rx_id); it does not issue one"))
    if not rx.rx_id:
        out.append(FieldViolation("prescription.rx_id", "required"))
    _pattern(out, "prescription.rx_id", rx.rx_id, RX_ID, "at most 40 letters, digits, '-' or '_'")
    if bill.rx_id and bill.rx_id != rx.rx_id:
        out.append(FieldViolation("rx_id", "must be prescription.rx_id (or empty) when the visit issues a prescription"))
    _pattern(out, "prescription.prescriber_id", rx.prescriber_id, STAFF_ID, "the prescribing doctor's code of 1-30 characters")
    if not 1 <= len(rx.items) <= MAX_RX_ITEMS:
        out.append(FieldViolation("prescription.items", f"must have 1..{MAX_RX_ITEMS} items, got {len(rx.items)}"))
    seen: set[str] = set()
    for i, (code, cnt) in enumerate(rx.items[:MAX_RX_ITEMS]):
        where = f"prescription.items[{i}]"
        _pattern(out, f"{where}.hilist_code", code, HILIST_CODE, "a catalogue code of 1-50 characters")
        if code in seen:
            out.append(FieldViolation(f"{where}.hilist_code", f"repeats {code[:MAX_TEXT]!r}; prescribe each item once"))
        seen.add(code)
        _bound(out, f"{where}.cnt", cnt, 1, MAX_CNT)
    _bound(out, "prescription.valid_days", rx.valid_days, 0, MAX_RX_VALID_DAYS)


def _lines(out: list[FieldViolation], bill: Bill) -> None:
    count = len(bill.fee_lines)
    if not 1 <= count <= MAX_FEE_LINES:
        out.append(FieldViolation("fee_lines", f"must have 1..{MAX_FEE_LINES} lines, got {count}"))
        return
    seen: set[str] = set()
    total_fen = 0
    for i, line in enumerate(bill.fee_lines):
        where = f"fee_lines[{i}]"
        _pattern(out, f"{where}.feedetl_sn", line.feedetl_sn, MSGID, "1-30 letters, digits, '-' or '_'")
        if line.feedetl_sn in seen:
            out.append(FieldViolation(f"{where}.feedetl_sn", f"repeats {line.feedetl_sn!r}; must be unique in the bill"))
        seen.add(line.feedetl_sn)
        _pattern(out, f"{where}.hilist_code", line.hilist_code, HILIST_CODE, "a catalogue code of 1-50 characters")
        _bound(out, f"{where}.cnt", line.cnt, 1, MAX_CNT)
        _bound(out, f"{where}.pric_fen", line.pric_fen, 1, MAX_PRIC_FEN)
        total_fen += line.cnt * line.pric_fen
    if total_fen + bill.delivery_fee_fen > MAX_BILL_FEN:
        out.append(FieldViolation("fee_lines", f"bill total must be at most {MAX_BILL_FEN} fen"))


def reversal_violations(msgid: str, fixmedins_code: str, setl_id: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    check_msgid_and_code(out, msgid, fixmedins_code)
    _pattern(out, "setl_id", setl_id, SETL_ID, "a settlement id")
    return out

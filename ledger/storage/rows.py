"""The ledger's rows, the same on every backend: a settlement as the tuple
stored in the settlements table and back, times as epoch microseconds, and
a journal entry as the verify and clearing walks read it."""

# cython: nonecheck=True
from __future__ import annotations

import datetime as dt
import json
from codecs import ascii_decode as _ascii_decode
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

try:
    import orjson
except ImportError:  # a checkout installed before orjson was a dependency: the same bytes, by hand
    orjson = None

from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS,
    ClrType,
    LineSplit,
    PayLoc,
    Settlement,
    SettlementKind,
    Split,
)

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:  # the values' C struct members, read where a local is declared of their type (model.pxd)
    from cython.cimports.medsettle.ledger.settlement.model import LineSplit, Settlement, Split

SETTLEMENT_COLUMNS = (
    "setl_id", "fixmedins_code", "msgid", "fingerprint", "kind", "orig_setl_id",
    "psn_no", "insutype", "insuplc_admdvs", "mdtrtarea_admvs", "clr_type", "pay_loc",
    "setl_time_us", "setlym", *AMOUNT_FIELDS, "balc_fen", "line_splits", "audit_flags",
    "payee_code",
)

_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def to_us(at: dt.datetime) -> int:
    """Microseconds since the epoch: exact, so a stored time reads back equal."""
    delta = at - _UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> dt.datetime:
    return _UNIX_EPOCH + dt.timedelta(microseconds=us)


@cython.locals(ls=LineSplit)
def line_splits_json(line_splits: tuple[LineSplit, ...]) -> str:
    """The stored line_splits column: the bytes of json.dumps(
    [[feedetl_sn, category, det_item_fee_sumamt, fulamt_ownpay, overlmt_selfpay,
    preselfpay, inscp_scp], ...], separators=(",", ":")). orjson writes the
    same bytes (a fifth of the instructions of the text built by hand) unless
    a serial number holds a character outside printable ASCII (json escapes
    it as \\uXXXX, orjson writes it as is, or refuses a lone surrogate) or an
    amount is beyond 64 bits: then _line_splits_json_by_hand."""
    if orjson is None:
        return _line_splits_json_by_hand(line_splits)
    rows = []
    for ls in line_splits:  # a loop, not a comprehension: ls is a declared local
        rows.append((ls.feedetl_sn, ls.category, ls.det_item_fee_sumamt_fen, ls.fulamt_ownpay_amt_fen,
                     ls.overlmt_selfpay_fen, ls.preselfpay_amt_fen, ls.inscp_scp_amt_fen))
    try:
        encoded = orjson.dumps(rows)
        # one call that both checks for ASCII and decodes (not the bytes'
        # isascii() and decode() methods, each looked up by name)
        text = _ascii_decode(encoded)[0]
    except (TypeError, UnicodeDecodeError):  # orjson.JSONEncodeError: a lone surrogate, an amount beyond 64 bits
        return _line_splits_json_by_hand(line_splits)
    if "\x7f" in text:
        return _line_splits_json_by_hand(line_splits)
    return text


def _line_splits_json_by_hand(line_splits: tuple[LineSplit, ...]) -> str:
    """line_splits_json for any text: the amounts are ints, "%d" writes them
    as json does; the string is escaped by json's own ASCII encoder."""
    return "[" + ",".join([
        "[%s,%d,%d,%d,%d,%d,%d]" % (
            _json_string(ls.feedetl_sn), ls.category, ls.det_item_fee_sumamt_fen, ls.fulamt_ownpay_amt_fen,
            ls.overlmt_selfpay_fen, ls.preselfpay_amt_fen, ls.inscp_scp_amt_fen,
        )
        for ls in line_splits
    ]) + "]"


@cython.locals(s=Settlement, split=Split)
def settlement_row(s: Settlement, fingerprint: str, payee_code: str, setl_time_us: int | None = None) -> tuple[Any, ...]:
    """setl_time_us: to_us(s.setl_time) when the caller has it already."""
    split = s.split
    return (
        s.setl_id, s.fixmedins_code, s.msgid, fingerprint, int(s.kind), s.orig_setl_id,
        s.psn_no, s.insutype, s.insuplc_admdvs, s.mdtrtarea_admvs, int(s.clr_type),
        int(s.pay_loc), to_us(s.setl_time) if setl_time_us is None else setl_time_us, s.setlym,
        *split.amounts(), split.balc_fen, line_splits_json(split.line_splits), ",".join(s.audit_flags), payee_code,
    )


def settlement_from_row(row: tuple[Any, ...]) -> tuple[Settlement, str, str]:
    """(settlement, fingerprint, payee_code) of a settlements row."""
    values = dict(zip(SETTLEMENT_COLUMNS, row))
    line_splits = tuple(
        LineSplit(sn, Category(cat), total, fulamt, overlmt, pre, inscp)
        for sn, cat, total, fulamt, overlmt, pre, inscp in json.loads(values["line_splits"])
    )
    split = Split(
        **{name: values[name] for name in AMOUNT_FIELDS},
        balc_fen=values["balc_fen"],
        line_splits=line_splits,
    )
    settlement = Settlement(
        setl_id=values["setl_id"],
        msgid=values["msgid"],
        fixmedins_code=values["fixmedins_code"],
        psn_no=values["psn_no"],
        insutype=values["insutype"],
        insuplc_admdvs=values["insuplc_admdvs"],
        mdtrtarea_admvs=values["mdtrtarea_admvs"],
        clr_type=ClrType(values["clr_type"]),
        pay_loc=PayLoc(values["pay_loc"]),
        kind=SettlementKind(values["kind"]),
        orig_setl_id=values["orig_setl_id"],
        setl_time=from_us(values["setl_time_us"]),
        setlym=values["setlym"],
        split=split,
        audit_flags=tuple(f for f in values["audit_flags"].split(",") if f),
        payee_code=values["payee_code"],
    )
    return settlement, values["fingerprint"], values["payee_code"]


@dataclass(frozen=True, slots=True)
class JournalRow:
    entry_no: int
    setl_id: str
    kind: str
    setlym: str
    created_us: int
    prev_hash: str
    hash: str
    settlement: tuple[str, str, str, int, int] | None  # insuplc, mdtrtarea, payee, hifp_pay, acct_pay
    postings: list[tuple[str, str, int]]  # (book, account, amount_fen) in insert order
    # The hash chain the entry belongs to: 0, the one chain of a single-writer
    # ledger (contiguous entry numbers); on PostgreSQL one per writer (numbers
    # increase with gaps), named by chain_heads.chain_id.
    chain: int = 0

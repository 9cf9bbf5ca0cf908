"""The clearing statement: built once, stored as JSON bytes in clearing_runs,
and every other output (CSV, payment instructions) rendered from those bytes,
so a re-run writes and prints the same thing, byte for byte."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any, Iterable

from medsettle.ledger.clearing.netting import Clearing, Position, ReciprocalBalance
from medsettle.ledger.clearing.reconcile import BreakLog, DeclaredResult
from medsettle.ledger.clearing.store import InstitutionTotals
from medsettle.ledger.money import yuan
from medsettle.ledger.posting import accounts

STATEMENT_FORMAT = "medsettle-clearing-statement/1"
BREAKS_FORMAT = "medsettle-clearing-breaks/1"
TOTAL_FIELDS = ("setl_cnt", "medfee_sumamt_fen", "fund_pay_sumamt_fen", "acct_pay_fen", "psn_cash_pay_fen", "payable_fen")
STATEMENT_CSV_COLUMNS = ("section", "party", "counterparty", *TOTAL_FIELDS, "amount_fen")
INSTRUCTION_CSV_COLUMNS = ("payer", "payee", "amount_fen", "amount_yuan", "purpose")


def build_statement(
    province: str,
    period: str,
    cleared_at: str,
    entry: tuple[int, str] | None,
    institutions: list[InstitutionTotals],
    reciprocal: list[ReciprocalBalance],
    clearing: Clearing,
    declared: list[DeclaredResult],
) -> dict[str, Any]:
    """The statement as plain data (entry None: a dry run, nothing posted)."""
    totals = {name: sum(getattr(i, name) for i in institutions) for name in TOTAL_FIELDS}
    return {
        "format": STATEMENT_FORMAT,
        "province": province,
        "period": period,
        "cleared_at": cleared_at,
        "clearing_entry": None if entry is None else {"entry_no": entry[0], "hash": entry[1]},
        "totals": totals,
        "institutions": [
            {"fixmedins_code": i.fixmedins_code, "agency": i.agency, **{name: getattr(i, name) for name in TOTAL_FIELDS}}
            for i in institutions
        ],
        "reciprocal": [
            {"treatment": b.treatment, "insurance": b.insurance, "amount_fen": b.amount_fen} for b in reciprocal
        ],
        "positions": [_position(p) for p in clearing.positions],
        "clearing_postings": [
            {"book": p.book, "account": p.account, "amount_fen": p.amount_fen} for p in clearing.postings
        ],
        "declared": [_declared(d) for d in declared],
        "payment_instructions": payment_instructions(province, institutions, clearing.positions),
    }


def _position(p: Position) -> dict[str, Any]:
    return {
        "party": p.party, "net_fen": p.net_fen, "prepaid_available_fen": p.prepaid_available_fen,
        "prepaid_drawn_fen": p.prepaid_drawn_fen, "shortfall_fen": p.shortfall_fen, "to_settle_fen": p.to_settle_fen,
    }


def _declared(d: DeclaredResult) -> dict[str, Any]:
    return {
        "fixmedins_code": d.fixmedins_code, "clr_type": d.clr_type, "stmt_rslt": int(d.stmt_rslt),
        "platform": _totals(d.platform), "declared": _totals(d.declared),
        "platform_settlements": [
            {"setl_id": s, "msgid": m, "medfee_sumamt_fen": fee, "fund_pay_sumamt_fen": fund}
            for s, m, fee, fund in d.platform_settlements
        ],
    }


def _totals(t: Any) -> dict[str, int]:
    return {name: getattr(t, name) for name in TOTAL_FIELDS[:-1]}


def payment_instructions(province: str, institutions: Iterable[InstitutionTotals],
                         positions: Iterable[Position]) -> list[dict[str, Any]]:
    """Agency -> institution (the period's payables), then agency <-> province
    (what is left of each net position after the prepaid draw). A negative
    amount turns the instruction round: amounts are always positive."""
    book = accounts.province_book(province)
    instructions = []
    for i in institutions:
        instructions.append(_instruction(i.agency, i.fixmedins_code, i.payable_fen, "institution payable"))
    for p in positions:
        instructions.append(_instruction(book, p.party, p.to_settle_fen, "net position"))
    return [i for i in instructions if i is not None]


def _instruction(payer: str, payee: str, amount_fen: int, purpose: str) -> dict[str, Any] | None:
    if amount_fen == 0:
        return None
    if amount_fen < 0:
        payer, payee, amount_fen = payee, payer, -amount_fen
    return {"payer": payer, "payee": payee, "amount_fen": amount_fen, "purpose": purpose}


# ---- renderings ------------------------------------------------------------
def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def render_statement_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_CSV_COLUMNS)
    blank = [""] * len(TOTAL_FIELDS)
    writer.writerow(["total", data["province"], data["period"], *(data["totals"][n] for n in TOTAL_FIELDS), ""])
    for i in data["institutions"]:
        writer.writerow(["institution", i["fixmedins_code"], i["agency"], *(i[n] for n in TOTAL_FIELDS), i["payable_fen"]])
    for r in data["reciprocal"]:
        writer.writerow(["reciprocal", r["treatment"], r["insurance"], *blank, r["amount_fen"]])
    for p in data["positions"]:
        writer.writerow(["net_position", p["party"], f"province:{data['province']}", *blank, p["net_fen"]])
        if p["prepaid_drawn_fen"]:
            writer.writerow(["prepaid_drawn", p["party"], f"province:{data['province']}", *blank, p["prepaid_drawn_fen"]])
        if p["shortfall_fen"]:
            writer.writerow(["prepaid_shortfall", p["party"], f"province:{data['province']}", *blank, p["shortfall_fen"]])
    return out.getvalue()


def render_instructions_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INSTRUCTION_CSV_COLUMNS)
    for i in data["payment_instructions"]:
        writer.writerow([i["payer"], i["payee"], i["amount_fen"], yuan(i["amount_fen"]), i["purpose"]])
    return out.getvalue()


def breaks_report(province: str, period: str, log: BreakLog, declared: list[DeclaredResult]) -> dict[str, Any]:
    return {
        "format": BREAKS_FORMAT,
        "province": province,
        "period": period,
        "breaks_total": log.total,
        "counts": dict(sorted(log.counts.items())),
        "breaks": [
            {"kind": b.kind, "where": b.where, "amount_fen": b.amount_fen, "detail": b.detail} for b in log.listed
        ],
        "declared": [_declared(d) for d in declared],
    }

"""The clearing statement as one self-contained HTML page for people: the
agencies' net positions as a chart, the prepaid funds and shortfalls, the
reconciliation result per institution, the totals that sum to zero and the
payment instructions. Rendered from the same statement data as the JSON and
CSV files (ledger/clearing/statement.py), so the numbers cannot differ.

Self-contained: inline CSS, an inline SVG chart, no script, no font, no
image and no link to fetch, so the page opens offline and prints as is.
Every amount cell carries its value in fen (`data-fen`) beside the yuan a
reader sees, so a program can check the page against the JSON."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any, Iterable

from medsettle.ledger.money import yuan
from medsettle.ledger.reconcile import StmtResult

STMT_RESULT_WORDS = {
    StmtResult.BALANCED: "balanced",
    StmtResult.PLATFORM_MORE: "the platform has more",
    StmtResult.INSTITUTION_MORE: "the institution has more",
    StmtResult.INCONSISTENT: "inconsistent",
}
INSTITUTION_FIELDS = ("medfee_sumamt_fen", "fund_pay_sumamt_fen", "acct_pay_fen", "psn_cash_pay_fen", "payable_fen")
POSITION_FIELDS = ("net_fen", "prepaid_available_fen", "prepaid_drawn_fen", "shortfall_fen", "to_settle_fen")
CHART_WIDTH, CHART_ROW, CHART_LABEL = 720, 26, 120  # px

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:#1d2430;margin:0;background:#f4f6f9}
main{max-width:1000px;margin:0 auto;padding:24px 28px 40px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6675;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #dde3ea;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:17px;font-variant-numeric:tabular-nums}.card span{color:#5b6675;font-size:12px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #e6eaef;text-align:left;white-space:nowrap}
th{background:#f0f3f7;font-weight:600;font-size:12px;color:#3c4654}
td.n,th.n{text-align:right}tr.sum td{font-weight:600;border-top:2px solid #9aa5b3}
.short{color:#b3261e;font-weight:600}.ok{color:#1b7f3b}.bad{color:#b3261e;font-weight:600}
.note{color:#5b6675;font-size:12px}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}
@media print{body{background:#fff}main{padding:0}}
"""


def render_statement_html(data: dict[str, Any]) -> str:
    """The page for one clearing statement (the parsed statement JSON)."""
    title = f"Clearing statement, province {data['province']}, period {data['period']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>", _subtitle(data), _cards(data["totals"], len(data["institutions"])),
        "<h2>Net positions through the provincial clearing book</h2>",
        '<p class="note">What the province owes each party (to the right) or each party owes the province '
        "(to the left), before prepaid funds are drawn.</p>",
        _chart(data["positions"]),
        "<h2>Prepaid funds and shortfalls</h2>", _positions_table(data["positions"]), _shortfalls(data["positions"]),
        "<h2>Totals that sum to zero</h2>", _zero_sums(data),
        "<h2>Reconciliation per institution</h2>", _institutions_table(data),
        "<h2>Payment instructions</h2>", _instructions_table(data["payment_instructions"]),
        f'<p class="note">Format {escape(data["format"])}. The same numbers are in statement.json, '
        "statement.csv and payment_instructions.csv beside this page; amounts in yuan.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _subtitle(data: dict[str, Any]) -> str:
    entry = data["clearing_entry"]
    posted = ("dry run: nothing was posted" if entry is None
              else f"clearing entry {entry['entry_no']}, hash <code>{escape(entry['hash'][:16])}…</code>")
    return f'<p class="sub">Cleared at {escape(data["cleared_at"])}; {posted}.</p>'


def _money(fen: int, field: str, css: str = "n") -> str:
    return f'<td class="{css}" data-field="{field}" data-fen="{fen}">{yuan(fen)}</td>'


def _row(kind: str, key: str, cells: Iterable[str], css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<tr data-row="{kind}" data-key="{escape(key)}"{klass}>{"".join(cells)}</tr>'


def _head(*columns: str) -> str:
    return "<tr>" + "".join(f'<th class="n">{escape(c[1:])}</th>' if c.startswith(">") else f"<th>{escape(c)}</th>"
                            for c in columns) + "</tr>"


def _cards(totals: dict[str, int], institutions: int) -> str:
    money = (("medfee_sumamt_fen", "medical fees"), ("fund_pay_sumamt_fen", "paid by the fund"),
             ("acct_pay_fen", "personal accounts"), ("psn_cash_pay_fen", "cash"),
             ("payable_fen", "payable to institutions"))
    cards = [f'<div class="card"><b data-field="setl_cnt" data-count="{totals["setl_cnt"]}">{totals["setl_cnt"]}</b>'
             f"<span>settlement records</span></div>",
             f'<div class="card"><b data-field="institutions" data-count="{institutions}">{institutions}</b>'
             "<span>institutions</span></div>"]
    cards += [f'<div class="card"><b data-field="{field}" data-fen="{totals[field]}">{yuan(totals[field])}</b>'
              f"<span>{label}, yuan</span></div>" for field, label in money]
    return f'<div class="cards" data-row="totals">{"".join(cards)}</div>'


def _chart(positions: list[dict[str, Any]]) -> str:
    """Horizontal bars from a zero axis in the middle; one row per party."""
    if not positions:
        return '<p class="note">No cross-region balances this period: nothing to net.</p>'
    largest = max(abs(p["net_fen"]) for p in positions) or 1
    half = (CHART_WIDTH - CHART_LABEL) / 2 - 70  # room for the amount beside the bar
    axis = CHART_LABEL + (CHART_WIDTH - CHART_LABEL) / 2
    height = CHART_ROW * len(positions) + 10
    shapes = [f'<line x1="{axis:.1f}" y1="0" x2="{axis:.1f}" y2="{height}" stroke="#9aa5b3"/>']
    for row, p in enumerate(positions):
        y = 5 + row * CHART_ROW
        width = abs(p["net_fen"]) / largest * half
        x = axis if p["net_fen"] >= 0 else axis - width
        colour = "#2b7a78" if p["net_fen"] >= 0 else "#c0504d"
        label_x = axis + width + 6 if p["net_fen"] >= 0 else axis - width - 6
        anchor = "start" if p["net_fen"] >= 0 else "end"
        shapes += [
            f'<text x="{CHART_LABEL - 8}" y="{y + 15}" text-anchor="end">{escape(p["party"])}</text>',
            f'<rect data-party="{escape(p["party"])}" data-fen="{p["net_fen"]}" x="{x:.1f}" y="{y + 3}" '
            f'width="{width:.1f}" height="{CHART_ROW - 8}" fill="{colour}"><title>{escape(p["party"])}: '
            f'{yuan(p["net_fen"])} yuan</title></rect>',
            f'<text x="{label_x:.1f}" y="{y + 15}" text-anchor="{anchor}">{yuan(p["net_fen"])}</text>',
        ]
    return (f'<svg role="img" aria-label="Net positions" width="{CHART_WIDTH}" height="{height}" '
            f'viewBox="0 0 {CHART_WIDTH} {height}">{"".join(shapes)}</svg>')


def _positions_table(positions: list[dict[str, Any]]) -> str:
    rows = [_head("party", ">net", ">prepaid fund", ">drawn", ">shortfall", ">to settle in money")]
    for p in positions:
        cells = [f"<td>{escape(p['party'])}</td>"]
        cells += [_money(p[f], f, "n short" if f == "shortfall_fen" and p[f] else "n") for f in POSITION_FIELDS]
        rows.append(_row("position", p["party"], cells))
    sums = {f: sum(p[f] for p in positions) for f in POSITION_FIELDS}
    rows.append(_row("position_sum", "all", ["<td>all parties</td>", *(_money(sums[f], f) for f in POSITION_FIELDS)],
                     "sum"))
    return f"<table>{''.join(rows)}</table>"


def _shortfalls(positions: list[dict[str, Any]]) -> str:
    short = [p for p in positions if p["shortfall_fen"]]
    if not short:
        return '<p class="ok">Every prepaid fund covered what its agency owed.</p>'
    lines = [f"<li>{escape(p['party'])}'s prepaid fund covers {yuan(p['prepaid_drawn_fen'])} of "
             f"{yuan(-p['net_fen'])} yuan: it must pay {yuan(p['shortfall_fen'])} yuan to the province.</li>"
             for p in short]
    return f'<ul class="short">{"".join(lines)}</ul>'


def _zero_sums(data: dict[str, Any]) -> str:
    """Sums that must be zero: the net positions, and the clearing entry's postings in each book."""
    per_book: dict[str, int] = defaultdict(int)
    for posting in data["clearing_postings"]:
        per_book[posting["book"]] += posting["amount_fen"]
    rows = [_head("what", ">sum", "")]
    sums = [("net_positions", "net positions of all parties", sum(p["net_fen"] for p in data["positions"]))]
    sums += [(f"book:{book}", f"clearing entry postings in book {book}", total) for book, total in sorted(per_book.items())]
    for key, label, total in sums:
        verdict = '<td class="ok">zero</td>' if total == 0 else '<td class="bad">NOT ZERO</td>'
        rows.append(_row("zero_sum", key, [f"<td>{escape(label)}</td>", _money(total, "sum_fen"), verdict]))
    return f"<table>{''.join(rows)}</table>"


def _institutions_table(data: dict[str, Any]) -> str:
    declared: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in data["declared"]:
        declared[d["fixmedins_code"]].append(d)
    rows = [_head("institution", "agency", ">records", ">medical fees", ">fund", ">personal account", ">cash",
                  ">payable", "reconciliation")]
    for i in data["institutions"]:
        cells = [f"<td>{escape(i['fixmedins_code'])}</td>", f"<td>{escape(i['agency'])}</td>",
                 f'<td class="n" data-field="setl_cnt" data-count="{i["setl_cnt"]}">{i["setl_cnt"]}</td>',
                 *(_money(i[f], f) for f in INSTITUTION_FIELDS), _result(declared.get(i["fixmedins_code"], []))]
        rows.append(_row("institution", i["fixmedins_code"], cells))
    totals = data["totals"]
    rows.append(_row("institution_sum", "all", [
        "<td>all institutions</td><td></td>",
        f'<td class="n" data-field="setl_cnt" data-count="{totals["setl_cnt"]}">{totals["setl_cnt"]}</td>',
        *(_money(totals[f], f) for f in INSTITUTION_FIELDS), "<td></td>"], "sum"))
    return (f"<table>{''.join(rows)}</table>"
            '<p class="note">Each institution\'s settlements match its payable account in its agency\'s book; '
            "where the institution declared its own totals (3201), the result per settlement type is shown.</p>")


def _result(declared: list[dict[str, Any]]) -> str:
    if not declared:
        return '<td class="ok" data-field="stmt_rslt">payable matches the ledger</td>'
    words = [f"{d['clr_type']}: {d['stmt_rslt']} {STMT_RESULT_WORDS[StmtResult(d['stmt_rslt'])]}" for d in declared]
    worst = max(d["stmt_rslt"] for d in declared)
    return (f'<td class="{"ok" if worst == 0 else "bad"}" data-field="stmt_rslt" '
            f'data-results="{",".join(str(d["clr_type"]) + ":" + str(d["stmt_rslt"]) for d in declared)}">'
            f"{escape('; '.join(words))}</td>")


def _instructions_table(instructions: list[dict[str, Any]]) -> str:
    rows = [_head("payer", "payee", ">amount", "purpose")]
    for n, i in enumerate(instructions):
        cells = [f"<td>{escape(i['payer'])}</td>", f"<td>{escape(i['payee'])}</td>", _money(i["amount_fen"], "amount_fen"),
                 f"<td>{escape(i['purpose'])}</td>"]
        rows.append(_row("instruction", str(n), cells))
    return f"<table>{''.join(rows)}</table>"

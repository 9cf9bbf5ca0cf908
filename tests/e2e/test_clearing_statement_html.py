"""The clearing statement's HTML page, read back with html.parser: every
number a person reads there is the statement JSON's, the page needs no
network, and it shows the prepaid shortfall and the declared-totals result.
The month's traffic goes through the real server; `clear` runs as the CLI."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.money import yuan
from tests.e2e.test_clearing_cli import (
    DECLARED_HEADER,
    OCT_CLEARING_CLOCK,
    clear,
    declared_totals,
    expected_positions,
    settle_month,
)


class StatementPage(HTMLParser):
    """Collects, per row (data-row, data-key), every cell's data-field with its
    value (data-fen or data-count) and the text shown; and the chart's bars."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # kind -> key -> field -> value
        self.shown: list[tuple[int, str]] = []  # (fen, text shown) of every amount
        self.bars: list[dict[str, str]] = []
        self.cell_classes: dict[tuple[str, str, str], str] = {}
        self._row: tuple[str, str] | None = None
        self._cell: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-row" in a:
            self._row = (a["data-row"], a.get("data-key", ""))
        if tag == "rect" and "data-party" in a:
            self.bars.append(a)
        elif "data-field" in a:
            self._cell, self._text = a, []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None and tag in ("td", "b"):
            cell, text = self._cell, "".join(self._text).strip()
            assert self._row is not None, cell
            kind, key = self._row
            field = cell["data-field"]
            if "data-fen" in cell:
                self.rows[kind].setdefault(key, {})[field] = int(cell["data-fen"])
                self.shown.append((int(cell["data-fen"]), text))
            elif "data-count" in cell:
                self.rows[kind].setdefault(key, {})[field] = int(cell["data-count"])
                assert text == cell["data-count"]
            else:
                self.rows[kind].setdefault(key, {})[field] = cell.get("data-results", text)
            self.cell_classes[(kind, key, field)] = cell.get("class", "")
            self._cell = None
        if tag in ("tr", "div") and self._row is not None and self._row[0] != "totals":
            self._row = None


def read_page(path: Path) -> StatementPage:
    page = StatementPage()
    page.feed(path.read_text("utf-8"))
    page.close()
    return page


def declared_csv(results, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The institutions' own totals, equal to the platform's."""
    path.write_text(DECLARED_HEADER + "".join(f"{c},{t},{','.join(map(str, v))}\n"
                                              for (c, t), v in declared_totals(results).items()))
    return path


def test_the_html_statement_shows_the_json_statements_numbers(server, client, bill, db_path, tmp_path):
    results = settle_month(client, bill, rounds=2)
    owes = -expected_positions(results, "44")["440600"]
    paid = CliRunner().invoke(main, ["prepay", "--province", "44", "--agency", "440600", "--amount-fen", str(owes // 3),
                                     "--db", str(db_path), "--clock", "2026-10-20T10:00:00+08:00"])
    assert paid.exit_code == 0, paid.output
    out = tmp_path / "statement"
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, out, "--declared", str(declared_csv(results, tmp_path / "d.csv")))
    assert done.exit_code == 0, done.output
    statement = json.loads((out / "statement.json").read_text("utf-8"))
    page = read_page(out / "statement.html")

    assert page.rows["totals"][""] == {**statement["totals"], "institutions": len(statement["institutions"])}
    positions = {p["party"]: p for p in statement["positions"]}
    assert page.rows["position"] == {party: {f: p[f] for f in (
        "net_fen", "prepaid_available_fen", "prepaid_drawn_fen", "shortfall_fen", "to_settle_fen")}
        for party, p in positions.items()}
    assert page.rows["position_sum"]["all"]["net_fen"] == 0
    assert positions["440600"]["shortfall_fen"] == owes - owes // 3 > 0  # the page is checked on a real shortfall
    assert "short" in page.cell_classes[("position", "440600", "shortfall_fen")]

    assert page.rows["institution"] == {i["fixmedins_code"]: {
        "setl_cnt": i["setl_cnt"], "medfee_sumamt_fen": i["medfee_sumamt_fen"], "fund_pay_sumamt_fen": i["fund_pay_sumamt_fen"],
        "acct_pay_fen": i["acct_pay_fen"], "psn_cash_pay_fen": i["psn_cash_pay_fen"], "payable_fen": i["payable_fen"],
        "stmt_rslt": ",".join(f"{d['clr_type']}:{d['stmt_rslt']}" for d in statement["declared"]
                              if d["fixmedins_code"] == i["fixmedins_code"]),
    } for i in statement["institutions"]}
    assert page.rows["institution_sum"]["all"] == {k: v for k, v in statement["totals"].items()}

    zero_sums = page.rows["zero_sum"]
    assert "net_positions" in zero_sums and "book:province:44" in zero_sums
    assert all(row["sum_fen"] == 0 for row in zero_sums.values())
    assert [page.rows["instruction"][str(n)]["amount_fen"] for n in range(len(page.rows["instruction"]))] == \
        [i["amount_fen"] for i in statement["payment_instructions"]]

    assert {bar["data-party"]: int(bar["data-fen"]) for bar in page.bars} == {p: v["net_fen"] for p, v in positions.items()}
    widest = max(page.bars, key=lambda bar: float(bar["width"]))
    assert abs(int(widest["data-fen"])) == max(abs(p["net_fen"]) for p in positions.values())
    assert page.shown and all(text == yuan(fen) for fen, text in page.shown)  # what a person reads is the number


def test_the_html_statement_opens_without_a_network(server, client, bill, db_path, tmp_path):
    settle_month(client, bill, rounds=1)
    done = clear(db_path, "2026-10", OCT_CLEARING_CLOCK, tmp_path / "s")
    assert done.exit_code == 0, done.output
    html = (tmp_path / "s" / "statement.html").read_text("utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<style>" in html
    assert not re.search(r"https?:|//[a-z]|\bsrc=|\bhref=|url\(|@import|<script|<link|<img", html, re.IGNORECASE)

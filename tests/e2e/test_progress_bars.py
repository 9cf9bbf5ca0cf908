"""The long commands draw a progress bar with a rate and an estimate on a
terminal (rich's FORCE_COLOR stands for one here), and print nothing of it
in a pipe (click's runner) or under --json: their output stays what a
script reads."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.reference.loader import sample_document

TERMINAL = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": None, "NO_COLOR": None}
PIPE = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None}
BAR_SIGNS = ("━", "\x1b[")  # the bar's glyph, and the terminal control sequences that draw it


@pytest.fixture
def ledger(server, client, bill, tmp_path):
    """A ledger with October traffic, and the arguments of each long command on it."""
    for _ in range(5):
        client.settle(bill())
    client.settle(bill(code="H44030100001", psn_no="44010000000000000001", insuplc="440100"))
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(sample_document()))
    db = str(server.db_path)
    return {
        "verify": (["verify", "--db", db], "entries/s"),
        "load-reference": (["load-reference", "--db", str(tmp_path / "other.db"), str(reference)], "records/s"),
        "export-daily": (["export-daily", "--date", "2026-10-15", "--db", db, "--out", str(tmp_path / "export"),
                          "--clock", "2026-10-16T09:00:00+08:00"], "records/s"),
        "backup": (["backup", "--db", db, "--out", str(tmp_path / "backup-{n}.db")], "pages/s"),
        "clear": (["clear", "--province", "44", "--period", "2026-10", "--db", db, "--statement-dir",
                   str(tmp_path / "statement"), "--clock", "2026-11-02T09:00:00+08:00"], "entries/s"),
    }


_runs = iter(range(10**6))


def run(args: list[str], env: dict[str, str | None]):  # type: ignore[no-untyped-def]
    args = [a.replace("{n}", str(next(_runs))) for a in args]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("command", ["verify", "load-reference", "export-daily", "backup", "clear"])
def test_a_terminal_gets_a_bar_with_a_rate_and_an_estimate_and_a_pipe_none(ledger, command):
    args, rate = ledger[command]
    on_terminal = run(args, TERMINAL)
    assert rate in on_terminal.stderr and "eta" in on_terminal.stderr and "━" in on_terminal.stderr
    assert rate not in on_terminal.stdout
    in_pipe = run(args, PIPE)  # the bar is drawn on stderr; stdout is the command's own output (tables too)
    assert not [sign for sign in BAR_SIGNS if sign in in_pipe.stderr], in_pipe.stderr
    assert rate not in in_pipe.stdout + in_pipe.stderr


@pytest.mark.parametrize("command", ["verify", "backup", "clear"])
def test_json_output_gets_no_bar_even_on_a_terminal(ledger, command):
    args, _ = ledger[command]
    as_json = run([*args, "--json"], TERMINAL)
    assert "━" not in as_json.stderr and "/s " not in as_json.stderr, as_json.stderr
    json.loads(as_json.stdout)  # nothing but the JSON

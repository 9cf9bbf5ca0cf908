"""Internet-hospital agreements through a real server and channel and the
operator's CLI: settling in and out of the agreement's dates, scope and
status, the payee it names on the settlement, its reversal and clearing's
payment instructions, suspension while the server runs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from click.testing import CliRunner

from medsettle.cli import main
from medsettle.ledger.clock import CHINA_TZ
from tests.service.test_internet import (  # noqa: F401  serve_with: a fixture
    GZ_INTERNET, SH_INTERNET, SH_PSN, followup, refusal, serve_with,
)
from tests.conftest import make_bill
from tests.service.test_settle import balances

SH_HOST = "H31010100001"


def _agreement(doc: dict[str, Any], internet_code: str) -> dict[str, Any]:
    return next(a for a in doc["internet_agreements"] if a["internet_code"] == internet_code)


def _rule(refused: Any) -> tuple[str, str]:
    return refused.metadata["rule"], refused.field_violations[0][0]


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def shanghai_followup(client: Any) -> Any:
    """A Shanghai follow-up, after the offline visit Shanghai requires on record."""
    offline = make_bill(code=SH_HOST, psn_no=SH_PSN, insuplc="310100", lines=[("XA0102", 1, 1500)])
    offline.diag_code = "E11.2"
    client.settle(offline)
    return client.settle(followup(code=SH_INTERNET, psn_no=SH_PSN, insuplc="310100"))


def test_the_payee_follows_the_agreement_on_the_settlement_its_reversal_and_the_ledger(client, server):
    payable = ("310100", f"payable:institution:{SH_HOST}")
    shanghai = shanghai_followup(client)
    assert shanghai.payee_code == SH_HOST  # Shanghai's agreement pays the host hospital
    assert client.get(SH_INTERNET, setl_id=shanghai.setl_id).payee_code == SH_HOST
    owed = shanghai.hifp_pay_fen + shanghai.acct_pay_fen
    assert owed > 0
    before = balances(server)[payable]
    reversal = client.reverse("REV-AG1", SH_INTERNET, shanghai.setl_id)
    assert reversal.payee_code == SH_HOST
    assert balances(server)[payable] == before + owed
    assert balances(server).get(("310100", f"payable:institution:{SH_INTERNET}"), 0) == 0
    assert client.settle(followup()).payee_code == GZ_INTERNET  # Guangzhou's agreement pays the internet hospital
    assert client.settle(make_bill()).payee_code == "H44010100001"  # a hospital is its own payee


def test_clearing_pays_the_payee_the_agreement_names(client, server, tmp_path):
    visit = shanghai_followup(client)
    out = tmp_path / "statement"
    done = cli("clear", "--province", "31", "--period", "2026-10", "--db", str(server.db_path),
               "--clock", "2026-11-02T09:00:00+08:00", "--statement-dir", str(out), "--json")
    assert done.exit_code == 0, done.output
    statement = json.loads((out / "statement.json").read_text())
    instructions = {(i["payer"], i["payee"]): i["amount_fen"] for i in statement["payment_instructions"]}
    offline = instructions[("310100", SH_HOST)] - (visit.hifp_pay_fen + visit.acct_pay_fen)
    assert offline > 0  # the host's own offline visit, and the internet hospital's follow-up, both to the host
    assert not any(payee == SH_INTERNET for _, payee in instructions)


def test_outside_the_agreements_dates_settlement_is_refused(client, clock):
    clock.set(dt.datetime(2028, 1, 3, 10, 0, tzinfo=CHINA_TZ))
    refused = refusal(lambda: client.settle(followup(prior="2027-12-20")))
    assert _rule(refused) == ("AGREEMENT_NOT_IN_FORCE", "fixmedins_code")
    assert "2026-01-01..2027-12-31" in refused.message


def test_no_agreement_an_ended_one_and_a_line_outside_its_scope_are_refused(serve_with):
    def change(doc):
        doc["internet_agreements"].remove(_agreement(doc, GZ_INTERNET))
        _agreement(doc, "H35010100901")["status"] = "ended"
        next(p for p in doc["internet_policies"] if p["admdvs"] == "310100")["online_item_kinds"] = [
            "consultation", "drug", "service"]  # the region allows a CT scan online; the agreement does not

    _, client = serve_with(change)
    assert _rule(refusal(lambda: client.settle(followup()))) == ("AGREEMENT_MISSING", "fixmedins_code")
    fujian = followup(code="H35010100901", psn_no="35010000000000000001", insuplc="350100")
    assert _rule(refusal(lambda: client.settle(fujian))) == ("AGREEMENT_ENDED", "fixmedins_code")
    ct = followup(code=SH_INTERNET, psn_no=SH_PSN, insuplc="310100", lines=[("S0011", 1, 2500), ("S0002", 1, 30000)])
    ct.prior_offline_diag_date = "2026-10-01"
    assert _rule(refusal(lambda: client.settle(ct))) == ("AGREEMENT_SCOPE", "fee_lines[1].hilist_code")


def test_an_operator_suspends_and_resumes_an_agreement_while_the_server_runs(client, server):
    db = str(server.db_path)
    assert client.settle(followup()).setl_id
    done = cli("agreements", "suspend", "--db", db, "--agreement-no", "AGR-4401-901")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["status"] == "suspended"
    assert _rule(refusal(lambda: client.settle(followup()))) == ("AGREEMENT_SUSPENDED", "fixmedins_code")
    assert cli("agreements", "resume", "--db", db, "--agreement-no", "AGR-4401-901").exit_code == 0
    assert client.settle(followup()).setl_id
    listed = [json.loads(line) for line in cli("agreements", "list", "--db", db).output.splitlines()]
    assert {a["agreement_no"]: a["status"] for a in listed}["AGR-4401-901"] == "active"
    assert {a["agreement_no"] for a in listed} >= {"AGR-4401-901", "AGR-3101-901"}


def test_an_operator_adds_an_agreement_that_names_the_host_as_payee(serve_with):
    def without_guangzhou(doc):
        doc["internet_agreements"].remove(_agreement(doc, GZ_INTERNET))

    server, client = serve_with(without_guangzhou)
    db = str(server.db_path)
    assert _rule(refusal(lambda: client.settle(followup()))) == ("AGREEMENT_MISSING", "fixmedins_code")
    done = cli("agreements", "add", "--db", db, "--agreement-no", "AGR-GZ-2", "--internet-code", GZ_INTERNET,
               "--valid-from", "2026-10-01", "--valid-to", "2026-12-31", "--item-kind", "consultation",
               "--item-kind", "drug", "--payee", "host")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["payee_code"] == "H44010100001"
    assert client.settle(followup()).payee_code == "H44010100001"
    listed = cli("agreements", "list", "--db", db, "--code", GZ_INTERNET).output.splitlines()
    assert [json.loads(line)["agreement_no"] for line in listed] == ["AGR-GZ-2"]


def test_the_agreements_command_refuses_bad_input_naming_it(server):
    db = str(server.db_path)
    bad_date = cli("agreements", "add", "--db", db, "--agreement-no", "A1", "--internet-code", GZ_INTERNET,
                   "--valid-from", "2026-10-01", "--valid-to", "2026-13-01")
    assert bad_date.exit_code != 0 and "valid_to" in bad_date.output
    not_internet = cli("agreements", "add", "--db", db, "--agreement-no", "A1", "--internet-code", "H44010100001",
                       "--valid-from", "2026-10-01", "--valid-to", "2026-12-01")
    assert not_internet.exit_code != 0 and "internet_code" in not_internet.output
    unknown = cli("agreements", "suspend", "--db", db, "--agreement-no", "NOPE")
    assert unknown.exit_code != 0 and "--agreement-no" in unknown.output

"""Settle, PreSettle, Reverse through a real server on port 0 and a real channel."""

from __future__ import annotations

import grpc
import pytest

from medsettle.client.settlement_client import CallRefused
from medsettle.ledger.posting.invariants import reciprocity_breaks, trial_balance_breaks
from medsettle.v1 import settlement_pb2 as pb

IDENTITY_FIELDS = (
    "medfee_sumamt_fen", "fulamt_ownpay_amt_fen", "overlmt_selfpay_fen", "preselfpay_amt_fen",
    "inscp_scp_amt_fen", "act_pay_dedc_fen", "hifp_pay_fen", "fund_pay_sumamt_fen",
    "psn_part_amt_fen", "hosp_part_amt_fen", "acct_pay_fen", "psn_cash_pay_fen",
)


@pytest.fixture
def db_path(ledger_db: str) -> str:
    """Every test here runs on each backend (a SQLite file, a PostgreSQL database)."""
    return ledger_db


def assert_identities(r: pb.SettleResult) -> None:
    assert r.medfee_sumamt_fen == r.fulamt_ownpay_amt_fen + r.overlmt_selfpay_fen + r.preselfpay_amt_fen + r.inscp_scp_amt_fen
    assert r.medfee_sumamt_fen == r.fund_pay_sumamt_fen + r.psn_part_amt_fen + r.hosp_part_amt_fen
    assert r.psn_part_amt_fen == r.acct_pay_fen + r.psn_cash_pay_fen


def balances(server):
    return server.service.store.book_balances()


def assert_ledger_sound(server) -> None:
    b = balances(server)
    assert trial_balance_breaks(b) == []
    assert reciprocity_breaks(b) == []


def test_hebei_worked_example_over_grpc(client, bill, server):
    r = client.settle(bill(code="H13010100001", psn_no="13010000000000000001", insuplc="130100",
                           lines=[("XB0202", 1, 452)]))
    assert (r.preselfpay_amt_fen, r.inscp_scp_amt_fen, r.act_pay_dedc_fen) == (23, 429, 429)
    assert (r.fund_pay_sumamt_fen, r.acct_pay_fen, r.psn_cash_pay_fen) == (0, 452, 0)
    assert r.balc_fen == 137815 - 452
    assert r.pay_loc == pb.PAY_LOC_LOCAL and r.clr_type == pb.CLR_TYPE_OUTPATIENT
    assert r.setlym == "2026-10"
    b = balances(server)
    assert b[("130100", "fund:personal_accounts")] == 452
    assert b[("130100", "payable:institution:H13010100001")] == -452
    assert_ledger_sound(server)


def test_local_settlement_posts_fund_and_account_to_the_institution(client, bill, server):
    r = client.settle(bill(lines=[("S0001", 1, 2500), ("S0004", 1, 200000)]))
    assert_identities(r)
    assert r.fund_pay_sumamt_fen > 0
    b = balances(server)
    assert b[("440100", "fund:pool")] == r.hifp_pay_fen
    assert b[("440100", "fund:personal_accounts")] == r.acct_pay_fen
    assert b[("440100", "payable:institution:H44010100001")] == -(r.hifp_pay_fen + r.acct_pay_fen)
    assert_ledger_sound(server)


@pytest.mark.parametrize(
    "psn_no, insuplc, pay_loc",
    [
        ("44030000000000000001", "440300", pb.PAY_LOC_IN_PROVINCE),
        ("13010000000000000001", "130100", pb.PAY_LOC_CROSS_PROVINCE),
    ],
)
def test_cross_region_books_a_reciprocal_receivable(client, bill, server, psn_no, insuplc, pay_loc):
    r = client.settle(bill(psn_no=psn_no, insuplc=insuplc, visit=pb.VISIT_TYPE_INPATIENT,
                           lines=[("S0003", 4, 6000), ("S0004", 1, 250000)]))
    assert r.pay_loc == pay_loc and r.clr_type == pb.CLR_TYPE_INPATIENT
    assert r.mdtrtarea_admvs == "440100" and r.insuplc_admdvs == insuplc
    owed = r.hifp_pay_fen + r.acct_pay_fen
    assert owed > 0
    b = balances(server)
    assert b[("440100", f"receivable:agency:{insuplc}")] == owed
    assert b[("440100", "payable:institution:H44010100001")] == -owed
    assert b[(insuplc, "payable:agency:440100")] == -owed
    assert b[(insuplc, "fund:pool")] == r.hifp_pay_fen
    assert ("440100", "fund:pool") not in b  # the treatment agency's fund pays nothing
    assert_ledger_sound(server)


def test_cross_region_uses_treatment_catalogue_and_insurance_policy(client, bill):
    # Treatment place's catalogue: XB0201 is 10 % first self-pay in Hebei, 5 % in Guangdong.
    in_hebei = client.pre_settle(bill(code="H13010100001", lines=[("XB0201", 1, 3000)]))
    in_guangzhou = client.pre_settle(bill(lines=[("XB0201", 1, 3000)]))
    assert (in_hebei.preselfpay_amt_fen, in_guangzhou.preselfpay_amt_fen) == (300, 150)
    # Insurance place's policy: a Guangzhou employee treated in Hebei gets Guangzhou's
    # deductible (100 yuan) and level-3 outpatient ratio (80 %), not Hebei's (900 yuan, 70 %).
    big = [("S0004", 1, 200000)]  # class B 10 %: eligible 1800 yuan
    guangzhou_insured = client.pre_settle(bill(code="H13010100001", lines=big))
    hebei_insured = client.pre_settle(bill(code="H13010100001", psn_no="13010000000000000001", insuplc="130100", lines=big))
    assert guangzhou_insured.inscp_scp_amt_fen == hebei_insured.inscp_scp_amt_fen == 180000
    assert (guangzhou_insured.act_pay_dedc_fen, guangzhou_insured.hifp_pay_fen) == (10000, (180000 - 10000) * 8 // 10)
    assert (hebei_insured.act_pay_dedc_fen, hebei_insured.hifp_pay_fen) == (90000, (180000 - 90000) * 7 // 10)


def test_pre_settle_stores_nothing(client, bill, server):
    before = balances(server)
    r1 = client.pre_settle(bill())
    r2 = client.pre_settle(bill())
    assert r1.setl_id == "" and r2.setl_id == ""
    assert r1.balc_fen == r2.balc_fen  # the account was not drawn
    assert balances(server) == before
    assert server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0


def test_split_state_carries_from_one_settlement_to_the_next(client, bill):
    first = client.settle(bill(lines=[("S0001", 1, 2500)]))
    second = client.settle(bill(lines=[("S0001", 1, 2500)]))
    assert first.act_pay_dedc_fen + second.act_pay_dedc_fen <= 10000
    assert second.balc_fen == first.balc_fen - second.acct_pay_fen


def test_retry_returns_the_first_result_byte_for_byte(client, bill, server):
    request = bill()
    first = client.settle(request)
    again = client.settle(request)
    assert again.SerializeToString() == first.SerializeToString()
    assert server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 1
    fetched = client.get("H44010100001", setl_id=first.setl_id)
    assert fetched.SerializeToString() == first.SerializeToString()


def test_same_msgid_other_payload_is_already_exists(client, bill, server):
    request = bill()
    first = client.settle(request)
    request.fee_lines[0].cnt = 3
    with pytest.raises(CallRefused) as refused:
        client.settle(request)
    assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert refused.value.reason == "IDEMPOTENCY_CONFLICT"
    assert refused.value.metadata["setl_id"] == first.setl_id
    assert [f for f, _ in refused.value.field_violations] == ["msgid"]
    assert server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 1


def test_reverse_is_the_exact_negation_and_restores_the_account(client, bill, server):
    original = client.settle(bill(psn_no="44030000000000000001", insuplc="440300"))
    reversal = client.reverse("REV-0001", "H44010100001", original.setl_id)
    assert reversal.kind == pb.SETTLEMENT_KIND_REVERSAL and reversal.orig_setl_id == original.setl_id
    for name in IDENTITY_FIELDS:
        assert getattr(reversal, name) == -getattr(original, name), name
    for a, b in zip(original.line_splits, reversal.line_splits):
        assert b.det_item_fee_sumamt_fen == -a.det_item_fee_sumamt_fen
    assert reversal.balc_fen == original.balc_fen + original.acct_pay_fen
    b = balances(server)
    assert all(amount == 0 for amount in b.values())
    # retry of the reversal: same answer, nothing posted again
    assert client.reverse("REV-0001", "H44010100001", original.setl_id) == reversal
    assert_ledger_sound(server)


@pytest.mark.parametrize("case", ["twice", "reversal", "unknown", "other_institution"])
def test_bad_reversals_are_refused_and_post_nothing(client, bill, server, case):
    original = client.settle(bill())
    reversal = client.reverse("REV-A", "H44010100001", original.setl_id)
    before = balances(server)
    target, code, expected = {
        "twice": (original.setl_id, "H44010100001", (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_REVERSED")),
        "reversal": (reversal.setl_id, "H44010100001", (grpc.StatusCode.FAILED_PRECONDITION, "REVERSAL_OF_REVERSAL")),
        "unknown": ("S999999999999", "H44010100001", (grpc.StatusCode.NOT_FOUND, "SETTLEMENT_NOT_FOUND")),
        "other_institution": (original.setl_id, "H44030100001", (grpc.StatusCode.NOT_FOUND, "SETTLEMENT_NOT_FOUND")),
    }[case]
    with pytest.raises(CallRefused) as refused:
        client.reverse("REV-B", code, target)
    assert (refused.value.code, refused.value.reason) == expected
    assert [f for f, _ in refused.value.field_violations] == ["setl_id"]
    assert balances(server) == before


def test_bad_input_names_every_field(client, bill, server):
    request = bill()
    request.msgid = "x" * 31
    request.insuplc_admdvs = "4401"
    request.fee_lines[1].cnt = 0
    request.fee_lines[2].pric_fen = -5
    with pytest.raises(CallRefused) as refused:
        client.settle(request)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    fields = [f for f, _ in refused.value.field_violations]
    assert fields == ["msgid", "insuplc_admdvs", "fee_lines[1].cnt", "fee_lines[2].pric_fen"]
    assert server.service.store.reader().execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 0


@pytest.mark.parametrize(
    "change, field, reason",
    [
        (lambda r: setattr(r, "psn_no", "99999999999999999999"), "psn_no", "UNKNOWN_PERSON"),
        (lambda r: setattr(r, "fixmedins_code", "H99999999999"), "fixmedins_code", "UNKNOWN_INSTITUTION"),
        (lambda r: setattr(r.fee_lines[1], "hilist_code", "NOPE01"), "fee_lines[1].hilist_code", "UNKNOWN_ITEM"),
        (lambda r: setattr(r, "insutype", 390), "insutype", "PERSON_MISMATCH"),
        (lambda r: setattr(r, "visit_type", pb.VISIT_TYPE_PHARMACY), "visit_type", "VISIT_NOT_ALLOWED"),
    ],
)
def test_bills_that_do_not_match_reference_data(client, bill, change, field, reason):
    request = bill()
    change(request)
    with pytest.raises(CallRefused) as refused:
        client.settle(request)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.reason == reason
    assert [f for f, _ in refused.value.field_violations] == [field]

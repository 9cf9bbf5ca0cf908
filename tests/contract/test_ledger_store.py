"""The storage port's contract (ledger/storage/port.py), run against every
backend: what the settlement processor writes in one batch reads back the
same through every read, a rolled-back batch leaves nothing, an idempotency
key is taken once, and the processor on top settles, retries and reverses
the same way whatever holds the ledger."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.posting.journal import GENESIS_HASH
from medsettle.ledger.reference.internet import Agreement, AgreementStatus, Payee
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.service import open_reference
from medsettle.ledger.settlement.model import Bill, FeeLine, PersonState, Settlement, SettlementKind, VisitType
from medsettle.ledger.settlement.prescriptions import RxRecord
from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand, SettlementProcessor
from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import BatchWrite, InternetWrite, LedgerStore, NotALedgerError, StorageError
from medsettle.ledger.storage.rows import settlement_row
from medsettle.ledger.verify import verify_journal

SETTLE_AT = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)
LINES = (FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 1, 3500), FeeLine("3", "XC0401", 1, 1200))
GZ_EMPLOYEE = "44010000000000000001"


def bill(msgid: str, code: str = "H44010100001", psn_no: str = GZ_EMPLOYEE, lines: tuple[FeeLine, ...] = LINES) -> Bill:
    return Bill(msgid=msgid, fixmedins_code=code, psn_no=psn_no, insutype=310, insuplc_admdvs="440100",
                visit_type=VisitType.OUTPATIENT, fee_lines=lines, acct_used_flag=True)


@pytest.fixture
def processor(ledger_store: LedgerStore) -> SettlementProcessor:
    clock = FixedClock(SETTLE_AT)
    return SettlementProcessor(ledger_store, open_reference(ledger_store, clock), clock)


def settled(outcomes: list[object]) -> list[Settlement]:
    assert all(isinstance(o, Settlement) for o in outcomes), outcomes
    return outcomes  # type: ignore[return-value]


def test_a_new_ledger_is_empty_and_starts_the_chain_at_genesis(ledger_store: LedgerStore) -> None:
    assert ledger_store.reference_body() is None
    ledger_store.begin()
    assert ledger_store.chain_head() == (0, 0, GENESIS_HASH)
    assert ledger_store.find_by_key("H44010100001", "M1") is None
    assert ledger_store.load_persons({GZ_EMPLOYEE}) == {}
    ledger_store.rollback()
    assert ledger_store.book_balances() == {}
    assert list(ledger_store.iter_entry_postings()) == []


def test_reference_persons_load_with_their_balance(ledger_store: LedgerStore) -> None:
    data, persons = parse_document(sample_document())
    ledger_store.save_reference('{"format": "x"}', persons, SETTLE_AT)
    assert ledger_store.reference_body() == '{"format": "x"}'
    ledger_store.begin()
    loaded = ledger_store.load_persons({p.psn_no for p in persons})
    ledger_store.rollback()
    assert {p.psn_no: p.acct_balc_fen for p in persons} == {k: v.acct_balc_fen for k, v in loaded.items()}
    assert all(state.years == {} for state in loaded.values())


def test_persons_load_with_every_year_row_of_theirs(ledger_store: LedgerStore) -> None:
    _, persons = parse_document(sample_document())
    ledger_store.save_reference('{"format": "x"}', persons, SETTLE_AT)
    first, second, third = persons[:3]
    write = BatchWrite()
    write.persons = {
        first.psn_no: PersonState(first.psn_no, first.insutype, first.insuplc_admdvs, 700,
                                  {2025: (100, 2_000), 2026: (300, 4_000)}),
        second.psn_no: PersonState(second.psn_no, second.insutype, second.insuplc_admdvs, 0, {2026: (5, 6)}),
    }
    write.touched_years = {(first.psn_no, 2025), (first.psn_no, 2026), (second.psn_no, 2026)}
    ledger_store.begin()
    ledger_store.insert_batch(write)
    ledger_store.commit()
    ledger_store.begin()
    loaded = ledger_store.load_persons({first.psn_no, second.psn_no, third.psn_no, "no-such-person"})
    ledger_store.rollback()
    assert loaded == {
        first.psn_no: PersonState(first.psn_no, first.insutype, first.insuplc_admdvs, 700,
                                  {2025: (100, 2_000), 2026: (300, 4_000)}),
        second.psn_no: PersonState(second.psn_no, second.insutype, second.insuplc_admdvs, 0, {2026: (5, 6)}),
        third.psn_no: PersonState(third.psn_no, third.insutype, third.insuplc_admdvs, third.acct_balc_fen, {}),
    }


def test_a_committed_batch_reads_back_the_same_through_every_read(ledger_store: LedgerStore,
                                                                   processor: SettlementProcessor) -> None:
    first, second = settled(processor.run_batch([SettleCommand(bill("M1"), True), SettleCommand(bill("M2"), True)]))
    assert first.setl_id != second.setl_id
    ledger_store.begin()
    assert ledger_store.find_by_key("H44010100001", "M1")[0] == first  # type: ignore[index]
    found = ledger_store.find_by_keys({("H44010100001", "M1"), ("H44010100001", "M2"), ("H44010100001", "M3")})
    assert {key: s for key, (s, _) in found.items()} == {("H44010100001", "M1"): first, ("H44010100001", "M2"): second}
    by_id = ledger_store.find_by_setl_id(second.setl_id)
    assert by_id is not None and by_id[0] == second and by_id[2] == "H44010100001"  # the payee
    assert ledger_store.reversal_of(first.setl_id) is None
    person = ledger_store.load_persons({GZ_EMPLOYEE})[GZ_EMPLOYEE]
    assert person.acct_balc_fen == second.split.balc_fen
    assert person.years[2026] == (second.split.act_pay_dedc_fen + first.split.act_pay_dedc_fen,
                                  first.split.hifp_pay_fen + second.split.hifp_pay_fen)
    setl_no, entry_no, head = ledger_store.chain_head()
    ledger_store.rollback()
    # The next batch continues the chain after the stored entries (numbers
    # may leave gaps where several servers take blocks of them: PostgreSQL).
    entries = list(ledger_store.iter_entry_postings())
    assert len(entries) == 2 and head == entries[-1].hash != GENESIS_HASH
    assert entry_no >= entries[-1].entry_no and setl_no >= int(second.setl_id[1:])
    assert ledger_store.get_settlement("H44010100001", setl_id=first.setl_id) == first
    assert ledger_store.get_settlement("H44010100001", msgid="M2") == second
    assert ledger_store.get_settlement("H99999999999", setl_id=first.setl_id) is None  # another institution's
    page = ledger_store.list_settlements_page("H44010100001", "2026-10", 0, 0, 10)
    assert [s for _, s in page] == [first, second]
    assert ledger_store.list_settlements_page("H44010100001", "2026-10", 0, page[0][0], 10) == page[1:]
    count, medfee, fund, acct, cash = ledger_store.period_totals("H44010100001", "2026-10", 11)
    assert (count, medfee) == (2, first.split.medfee_sumamt_fen + second.split.medfee_sumamt_fen)
    assert fund + acct + cash == medfee
    report, balances, _ = verify_journal(ledger_store.iter_entry_postings())
    assert report.ok and report.entries == 2 and report.head_hash == head
    assert balances == ledger_store.book_balances()
    assert sum(ledger_store.book_balances().values()) == 0
    assert ledger_store.orphan_postings() == 0


def test_a_rolled_back_batch_leaves_nothing(ledger_store: LedgerStore, processor: SettlementProcessor) -> None:
    settled(processor.run_batch([SettleCommand(bill("M1"), True)]))
    balances = ledger_store.book_balances()
    ledger_store.begin()
    head = ledger_store.chain_head()
    ledger_store.rollback()
    ledger_store.begin()
    assert ledger_store.chain_head()[2] == head[2]  # the same chain head hash: nothing of the batch stayed
    ledger_store.rollback()
    assert ledger_store.book_balances() == balances
    assert ledger_store.get_settlement("H44010100001", msgid="M1") is not None


def test_an_idempotency_key_is_stored_once(ledger_store: LedgerStore, processor: SettlementProcessor) -> None:
    """The database itself refuses a second row under one (institution,
    msgid): the last line of defence when two writers race."""
    (stored,) = settled(processor.run_batch([SettleCommand(bill("M1"), True)]))
    twin = dataclasses.replace(stored, setl_id="S999999999999")
    ledger_store.begin()
    with pytest.raises(StorageError):
        ledger_store.insert_batch(BatchWrite(settlements=[settlement_row(twin, "another payload", "H44010100001")]))
        ledger_store.commit()
    ledger_store.rollback()
    assert ledger_store.get_settlement("H44010100001", setl_id="S999999999999") is None


def test_the_processor_settles_retries_and_reverses_alike_on_every_backend(
        ledger_store: LedgerStore, processor: SettlementProcessor) -> None:
    (original,) = settled(processor.run_batch([SettleCommand(bill("M1"), True)]))
    (again,) = settled(processor.run_batch([SettleCommand(bill("M1"), True)]))
    assert again == original
    (conflict,) = processor.run_batch([SettleCommand(bill("M1", lines=LINES[:1]), True)])
    assert isinstance(conflict, Refused) and conflict.reason == Reason.IDEMPOTENCY_CONFLICT
    (reversal,) = settled(processor.run_batch([ReverseCommand("R1", "H44010100001", original.setl_id)]))
    assert reversal.kind == SettlementKind.REVERSAL and reversal.orig_setl_id == original.setl_id
    assert reversal.split.hifp_pay_fen == -original.split.hifp_pay_fen
    (twice,) = processor.run_batch([ReverseCommand("R2", "H44010100001", original.setl_id)])
    assert isinstance(twice, Refused) and twice.reason == Reason.ALREADY_REVERSED
    ledger_store.begin()
    assert ledger_store.reversal_of(original.setl_id) == reversal.setl_id
    person = ledger_store.load_persons({GZ_EMPLOYEE})[GZ_EMPLOYEE]
    ledger_store.rollback()
    assert person.years[2026] == (0, 0)  # the reversal gave back the deductible and the fund
    assert all(total == 0 for total in ledger_store.book_balances().values())
    assert verify_journal(ledger_store.iter_entry_postings())[0].ok


def test_internet_state_is_written_in_the_batch_and_read_back(ledger_store: LedgerStore) -> None:
    state = ledger_store.internet_state()
    ledger_store.begin()
    state.write(InternetWrite(
        quota_used={("H44010100001", 2026): 1200},
        rx_fills=[("S000000000001", "H44010100001", "RX1", "P44010100001", 1)],
        nonces=[("nonce-1", 1, 10)],
        visits=[("S000000000001", GZ_EMPLOYEE, "2026-10-15", "H44010100001", 1, "J06.9", "", "S0001,XB0201",
                 "1:2500,2:1750", "")],
        flags=[("S000000000001", "RULE", "field", "detail", "H44010100001", "2026-10-15", 1)],
    ))
    ledger_store.commit()
    ledger_store.begin()
    assert state.quota_used("H44010100001", 2026) == 1200 and state.quota_used("H44010100001", 2025) == 0
    assert state.quota_uses() == {("H44010100001", 2026): 1200}
    assert state.rx_filled_by("H44010100001", "RX1") == "S000000000001"
    assert state.rx_fill_of("S000000000001") and not state.rx_fill_of("S000000000002")
    assert state.nonce_seen("nonce-1") and not state.nonce_seen("nonce-2")
    assert state.day_visits([GZ_EMPLOYEE, "nobody"], "2026-10-15") == {GZ_EMPLOYEE: (1, {"S0001", "XB0201"})}
    assert state.offline_visit_since(GZ_EMPLOYEE, "J06", "2026-10-01")
    assert ledger_store.writer_connection().execute(
        "SELECT line_facts, pharmacist_id FROM visit_log").fetchall() == [("1:2500,2:1750", "")]
    assert not state.offline_visit_since(GZ_EMPLOYEE, "J06", "2026-10-16")
    state.write(InternetWrite(rx_releases=[("S000000000002", "S000000000001")]))
    assert state.rx_filled_by("H44010100001", "RX1") is None  # the reversal freed it
    state.prune_nonces(11)
    assert not state.nonce_seen("nonce-1")
    ledger_store.rollback()
    assert state.nonce_seen("nonce-1")  # the prune was rolled back with its transaction
    flags = ledger_store.flags_of_day("2026-10-15")
    assert [(f["setl_id"], f["rule"]) for f in flags] == [("S000000000001", "RULE")]
    assert ledger_store.flags_of_day("2026-10-15", "H99999999999") == []


def test_prescriptions_and_agreements_are_written_in_the_batch_and_read_back(ledger_store: LedgerStore) -> None:
    state = ledger_store.internet_state()
    record = RxRecord("H44010100901", "RX9", "S000000000001", GZ_EMPLOYEE, "DR1", "2026-10-15", "2026-10-17",
                      (("XA0102", 4), ("XB0201", 1)))
    ledger_store.begin()
    state.write(InternetWrite(rx_issued=[record], rx_fill_items=[
        ("S000000000002", "H44010100901", "RX9", "XA0102", 3, "PH1"),
        ("S000000000003", "H44010100901", "RX9", "XA0102", 1, "PH1"),
        ("S000000000003", "H44010100901", "RX9", "XB0201", 1, "PH1"),
    ]))
    ledger_store.commit()
    ledger_store.begin()
    assert state.rx_record("H44010100901", "RX9") == record and state.rx_record("H44010100901", "RX8") is None
    assert state.rx_filled("H44010100901", "RX9") == {"XA0102": 4, "XB0201": 1}
    assert sorted(state.rx_fill_items_of("S000000000003")) == [
        ("H44010100901", "RX9", "XA0102", 1), ("H44010100901", "RX9", "XB0201", 1)]
    assert state.rx_issued_by("S000000000001") == ("H44010100901", "RX9") and state.rx_issued_by("S000000000002") is None
    state.write(InternetWrite(rx_item_releases=[("S000000000004", "S000000000003")],
                              rx_voids=[("S000000000005", "S000000000001")]))
    assert state.rx_filled("H44010100901", "RX9") == {"XA0102": 3}  # the reversed sale gave its items back
    assert state.rx_fill_items_of("S000000000003") == []
    assert state.rx_record("H44010100901", "RX9").voided  # type: ignore[union-attr]
    agreement = Agreement("AGR-1", "H44010100901", "H44010100001", frozenset({"internet_followup"}),
                          frozenset({"consultation", "drug"}), "2026-01-01", "2026-12-31", AgreementStatus.ACTIVE,
                          Payee.HOST)
    state.save_agreement(agreement, 1)
    state.save_agreement(dataclasses.replace(agreement, status=AgreementStatus.SUSPENDED), 2)  # replaces it
    suspended = dataclasses.replace(agreement, status=AgreementStatus.SUSPENDED)
    assert state.agreements_of(["H44010100901"]) == [suspended] == state.agreements_of([])
    assert state.agreements_of(["H31010100901"]) == []
    ledger_store.commit()


def test_a_missing_ledger_opened_read_only_is_refused(ledger_db: str) -> None:
    with pytest.raises(NotALedgerError):
        open_ledger(ledger_db, read_only=True).close()

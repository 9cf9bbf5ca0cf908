"""The writer's hand-built encodings and shortcuts equal what they replace,
for any input: the stored bytes and the hash chain must not change."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import inspect
import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ, china_time, period_of, year_of
from medsettle.ledger.posting.journal import entry_hash, entry_hash_of_lines
from medsettle.ledger.posting.rules import Posting, _balanced, posting_lines, settlement_postings, unbalanced_books
from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement.model import (
    AMOUNT_FIELDS, Bill, FeeLine, LineSplit, Prescription, Settlement, Split, VisitType,
)
from medsettle.ledger.storage.port import PersonState
from medsettle.ledger.storage.sqlite import line_splits_json

PROPS = settings(max_examples=300, deadline=None)
amounts = st.integers(-(10**15), 10**15)

line_splits = st.builds(
    LineSplit,
    feedetl_sn=st.text(),  # any text: quotes, backslashes, control characters, non-ASCII, lone surrogates
    category=st.sampled_from(Category),
    det_item_fee_sumamt_fen=amounts,
    fulamt_ownpay_amt_fen=amounts,
    overlmt_selfpay_fen=amounts,
    preselfpay_amt_fen=amounts,
    inscp_scp_amt_fen=amounts,
)


def json_dumps_of(splits: tuple[LineSplit, ...]) -> str:
    """The encoding the column was written with before line_splits_json."""
    return json.dumps(
        [[ls.feedetl_sn, int(ls.category), ls.det_item_fee_sumamt_fen, ls.fulamt_ownpay_amt_fen,
          ls.overlmt_selfpay_fen, ls.preselfpay_amt_fen, ls.inscp_scp_amt_fen]
         for ls in splits],
        separators=(",", ":"),
    )


@PROPS
@given(st.lists(line_splits, max_size=8).map(tuple))
def test_line_splits_json_is_byte_identical_to_json_dumps(splits: tuple[LineSplit, ...]) -> None:
    assert line_splits_json(splits) == json_dumps_of(splits)


def test_line_splits_json_of_no_lines_and_of_awkward_serial_numbers() -> None:
    assert line_splits_json(()) == "[]"
    awkward = tuple(LineSplit(sn, Category.A, 1, 0, 0, 0, 1) for sn in ('"', "\\", "\n\x00", "é中", "\ud800", ""))
    assert line_splits_json(awkward) == json_dumps_of(awkward)
    # each on its own: printable ASCII (orjson's bytes), DEL and a control
    # character (escaped by json alone, resp. alike), non-ASCII, a lone surrogate
    for sn in ("S-01/ok", "\x7f", "a\x1fb", "é", "\udfff", "\t\b\f\r"):
        one = (LineSplit(sn, Category.B, 5, 0, 0, 0, 5),)
        assert line_splits_json(one) == json_dumps_of(one), sn
    beyond_64_bits = (LineSplit("1", Category.C, 2**70, -(2**64), 0, 0, 2**70 + 2**64),)
    assert line_splits_json(beyond_64_bits) == json_dumps_of(beyond_64_bits)


@PROPS
@given(st.lists(amounts, min_size=len(AMOUNT_FIELDS) + 1, max_size=len(AMOUNT_FIELDS) + 1))
def test_split_amounts_are_the_amount_fields_in_order(values: list[int]) -> None:
    split = Split(*values)
    assert split.amounts() == tuple(getattr(split, name) for name in AMOUNT_FIELDS)


instants = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1),
    timezones=st.sampled_from([dt.timezone.utc, CHINA_TZ, ZoneInfo("America/New_York"), dt.timezone(dt.timedelta(hours=-11))]),
)


@PROPS
@given(st.lists(instants, min_size=1, max_size=6))
def test_china_time_remembers_only_the_same_instant_object(ats: list[dt.datetime]) -> None:
    for at in ats + ats[::-1]:
        local = at.astimezone(CHINA_TZ)
        assert china_time(at) == local and china_time(at).tzinfo is CHINA_TZ
        assert period_of(at) == f"{local.year:04d}-{local.month:02d}" and year_of(at) == local.year


postings = st.lists(
    st.builds(Posting, st.sampled_from(["440100", "440300", "310100"]), st.just("a"), st.integers(-5, 5)), max_size=6
)


@PROPS
@given(postings)
def test_the_posting_balance_check_agrees_with_unbalanced_books(ps: list[Posting]) -> None:
    assert _balanced([(p.book, p.account, p.amount_fen) for p in ps]) == (not unbalanced_books(ps))


fen = st.integers(-(10**12), 10**12)
regions = st.sampled_from(["440100", "440300", "310100"])


@PROPS
@given(regions, regions, st.sampled_from(["H44010100001", "H31010100001"]), fen, fen)
def test_the_writers_posting_tuples_and_their_hash_are_the_postings_and_theirs(
        insuplc: str, mdtrtarea: str, payee: str, hifp: int, acct: int) -> None:
    """The writer posts and hashes tuples; verify recomputes from Posting values: the same lines, the same hash."""
    postings = settlement_postings(insuplc, mdtrtarea, payee, hifp, acct)
    lines = posting_lines(insuplc, mdtrtarea, payee, hifp, acct)
    assert lines == [(p.book, p.account, p.amount_fen) for p in postings]
    args = ("f" * 64, 41, "S000000000041", "settle", "2026-10", 1_760_495_400_000_000)
    text = "|".join((*args[:1], str(args[1]), *args[2:5], str(args[5])))
    before = hashlib.sha256(f"{text}|{';'.join(f'{p.book},{p.account},{p.amount_fen}' for p in postings)}".encode())
    assert entry_hash_of_lines(*args, lines) == entry_hash(*args, postings) == before.hexdigest()


@pytest.mark.parametrize("cls", [FeeLine, Bill, LineSplit, Split, Settlement, PersonState])
def test_each_value_takes_the_dataclass_parameters_and_stores_each_field(cls: type) -> None:
    """Interpreted, quick_value's __init__; compiled, the extension type's
    (model.pxd): the parameters, defaults and result of the plain dataclass."""
    plain = dataclasses.make_dataclass(
        "Plain", [(f.name, f.type, f) for f in dataclasses.fields(cls)], frozen=True, slots=True
    )
    if inspect.isfunction(cls.__init__):  # compiled, a slot wrapper: no signature, checked by the calls below
        assert inspect.signature(cls.__init__) == inspect.signature(plain.__init__)
    names = [f.name for f in dataclasses.fields(cls)]
    values = [object() for _ in names]
    built = cls(*values)
    assert [getattr(built, n) for n in names] == values
    assert cls(**dict(zip(names, values))) == built
    assert repr(built).removeprefix(cls.__name__) == repr(plain(*values)).removeprefix("Plain")
    assert hash(built) == hash(plain(*values))
    with pytest.raises(TypeError):
        cls(*values, object())
    with pytest.raises(TypeError):
        cls(**dict(zip(names, values)), unknown=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, names[0], 1)
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    with pytest.raises(TypeError):
        cls(*values[: len(required) - 1])
    defaults = cls(*values[: len(required)])
    assert [getattr(defaults, n) for n in names[len(required):]] == [f.default for f in dataclasses.fields(cls)[len(required):]]


def test_values_sent_to_the_writer_process_pickle_equal_and_keep_their_fast_init() -> None:
    """Commands and outcomes cross the pipe to the writer process by pickle:
    each comes back equal, of its own class, with nested values rebuilt too."""
    import pickle

    from medsettle.ledger.settlement.process import ReverseCommand, SettleCommand

    lines = (FeeLine("1", "S0001", 2, 2500), FeeLine("2", "XB0201", 1, 3500))
    bill = Bill(msgid="M1", fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
                insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT, fee_lines=lines, acct_used_flag=True)
    for value in (SettleCommand(bill, persist=True), ReverseCommand("R1", "H44010100001", "S000000000001")):
        back = pickle.loads(pickle.dumps(value))
        assert back == value and type(back) is type(value)
    assert type(pickle.loads(pickle.dumps(bill)).fee_lines[1]) is FeeLine


def fingerprint_by_parts(bill: Bill) -> str:
    """Bill.fingerprint as it was first written (a list of parts joined):
    the digests stored with every settlement were taken of this text."""
    parts = [
        bill.msgid, bill.fixmedins_code, bill.psn_no, str(bill.insutype),
        bill.insuplc_admdvs, str(int(bill.visit_type)), str(int(bill.acct_used_flag)),
        bill.diag_code, bill.prior_offline_diag_date, bill.rx_id,
        bill.prescribing_fixmedins_code, str(bill.delivery_fee_fen),
    ]
    for line in bill.fee_lines:
        parts.append(f"{line.feedetl_sn}\x1f{line.hilist_code}\x1f{line.cnt}\x1f{line.pric_fen}")
    if bill.ecert_nonce:
        parts.append(f"ecert\x1f{bill.ecert_nonce}")
    if bill.prescription is not None:
        parts.append(bill.prescription.fingerprint())
    if bill.pharmacist_id:
        parts.append(f"pharmacist\x1f{bill.pharmacist_id}")
    return "\x1e".join(parts)


texts = st.text(max_size=12)
bills = st.builds(
    Bill, msgid=texts, fixmedins_code=texts, psn_no=texts, insutype=st.integers(0, 10**6), insuplc_admdvs=texts,
    visit_type=st.sampled_from(VisitType),
    fee_lines=st.lists(st.builds(FeeLine, texts, texts, st.integers(-5, 10**6), st.integers(-5, 10**9)),
                       max_size=4).map(tuple),
    acct_used_flag=st.booleans(), diag_code=texts, prior_offline_diag_date=texts, rx_id=texts,
    prescribing_fixmedins_code=texts, delivery_fee_fen=st.integers(0, 10**9), ecert_nonce=texts,
    prescription=st.none() | st.builds(Prescription, texts, texts,
                                       st.lists(st.tuples(texts, st.integers(1, 99)), max_size=3).map(tuple),
                                       st.integers(0, 30)),
    pharmacist_id=texts,
)


@PROPS
@given(bills)
def test_the_fingerprint_text_is_the_one_stored_digests_were_taken_of(bill: Bill) -> None:
    assert bill.fingerprint() == fingerprint_by_parts(bill)

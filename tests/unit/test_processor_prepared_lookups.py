"""What the settlement processor prepares once instead of per settlement
gives the answers of the lookups it replaces: the clearing month of a time
(kept per month for fixed-offset clocks), the catalogue entry of each
fee line (ReferenceData.item of the institution's province) and the
stored Institution.province."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ, FixedClock, period_of, year_of
from medsettle.ledger.errors import Reason, Refused
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.reference.models import Institution, InstitutionKind
from medsettle.ledger.settlement.model import Bill, FeeLine, VisitType
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor

UTC = dt.timezone.utc
# Instants around China-time month and year ends, in the zones a clock may give.
BOUNDARIES = [dt.datetime(2026, m, 1, tzinfo=CHINA_TZ) for m in (10, 11, 12)] + [dt.datetime(2027, 1, 1, tzinfo=CHINA_TZ)]
ZONES = [UTC, dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(hours=-5)), CHINA_TZ]
instants = st.builds(
    lambda boundary, offset_us, zone: (boundary + dt.timedelta(microseconds=offset_us)).astimezone(zone),
    st.sampled_from(BOUNDARIES), st.integers(-3_600_000_000, 3_600_000_000) | st.sampled_from([-1, 0, 1]),
    st.sampled_from(ZONES),
)


@pytest.fixture(scope="module")
def reference():
    return parse_document(sample_document())[0]


@pytest.fixture
def processor(tmp_path: Path, reference):
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    store = SqliteLedgerStore(tmp_path / "ledger.db")
    doc = sample_document()
    data, persons = parse_document(doc)
    store.save_reference(json.dumps(doc, ensure_ascii=False), persons, BOUNDARIES[0])
    yield SettlementProcessor(store, data, FixedClock(BOUNDARIES[0].astimezone(UTC)))
    store.close()


@settings(max_examples=300, deadline=None)
@given(st.lists(instants, min_size=1, max_size=12))
def test_the_kept_month_is_the_period_and_year_of_every_time(tmp_path_factory, reference, times) -> None:
    from medsettle.ledger.storage.sqlite import SqliteLedgerStore

    store = SqliteLedgerStore(tmp_path_factory.mktemp("m") / "ledger.db")
    processor = SettlementProcessor(store, reference, FixedClock(times[0]))
    try:
        for at in times:  # in any order: a clock may step back
            assert processor._month_of(at) == (period_of(at), year_of(at)), at
    finally:
        store.close()


def test_settlements_either_side_of_a_month_end_get_their_own_period(processor) -> None:
    clock = processor._clock
    end_of_october = dt.datetime(2026, 10, 31, 15, 59, 59, 999_999, tzinfo=UTC)  # 23:59:59.999999 in China
    answers = []
    for i, at in enumerate([end_of_october, end_of_october + dt.timedelta(microseconds=1), end_of_october]):
        clock.set(at)
        bill = Bill(msgid=f"M{i}", fixmedins_code="H44010100001", psn_no="44010000000000000001", insutype=310,
                    insuplc_admdvs="440100", visit_type=VisitType.OUTPATIENT,
                    fee_lines=(FeeLine("1", "S0001", 1, 2500),))
        (answer,) = processor.run_batch([SettleCommand(bill, persist=True)])
        answers.append(answer)
    assert [a.setlym for a in answers] == ["2026-10", "2026-11", "2026-10"]


def test_an_institutions_catalogue_is_its_provinces_then_the_national_one(processor) -> None:
    reference = processor._reference
    codes = set(reference.catalogue) | {c for items in reference.province_catalogue.values() for c in items} | {"NOPE"}
    assert reference.province_catalogue, "the sample has provincial entries to prefer"
    for institution in reference.institutions.values():
        site = processor._site(institution.code)
        for code in codes:
            bill = Bill(msgid="P", fixmedins_code=institution.code, psn_no="P1", insutype=310, insuplc_admdvs="440100",
                        visit_type=VisitType.OUTPATIENT, fee_lines=(FeeLine("1", code, 1, 100),))
            expected = reference.item(institution.province, code)
            if expected is None:
                with pytest.raises(Refused) as refused:
                    processor._priced_lines(bill, site)
                assert refused.value.reason == Reason.UNKNOWN_ITEM
                assert [v.field for v in refused.value.violations] == ["fee_lines[0].hilist_code"]
            else:
                ((line, item),) = processor._priced_lines(bill, site)
                assert line is bill.fee_lines[0] and item is expected, (institution.code, code)


def test_institution_province_is_stored_yet_the_value_is_as_before() -> None:
    hospital = Institution("H1", "A hospital", InstitutionKind.HOSPITAL, 3, "440103")
    assert hospital.province == "44"
    assert hospital == Institution("H1", "A hospital", InstitutionKind.HOSPITAL, 3, "440103")
    assert hash(hospital) == hash(Institution("H1", "A hospital", InstitutionKind.HOSPITAL, 3, "440103"))
    assert "province" not in repr(hospital)
    assert pickle.loads(pickle.dumps(hospital)) == hospital
    moved = dataclasses.replace(hospital, admdvs="350102")
    assert moved.province == "35"
    with pytest.raises(dataclasses.FrozenInstanceError):
        hospital.province = "35"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Institution("H1", "A hospital", InstitutionKind.HOSPITAL, 3, "440103", None, "44")  # type: ignore[call-arg]

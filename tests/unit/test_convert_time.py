"""result_pb writes setl_time without Timestamp.FromDatetime (the hot path):
it must be the same instant, to the microsecond."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.settlement.model import ClrType, PayLoc, Settlement, SettlementKind, Split
from medsettle.server.convert import result_pb


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.sampled_from([dt.timezone.utc, CHINA_TZ])))
def test_setl_time_is_the_same_instant_as_from_datetime(at):
    settlement = Settlement(
        setl_id="S000000000001", msgid="M1", fixmedins_code="H44010100001", psn_no="44010000000000000001",
        insutype=310, insuplc_admdvs="440100", mdtrtarea_admvs="440100", clr_type=ClrType(11),
        pay_loc=PayLoc(2), kind=SettlementKind.SETTLE, orig_setl_id="", setl_time=at, setlym="2026-10",
        split=Split(*([0] * 12), balc_fen=0),
    )
    expected = Timestamp()
    expected.FromDatetime(at)
    written = result_pb(settlement).setl_time
    assert (written.seconds, written.nanos) == (expected.seconds, expected.nanos)
    # Compared in UTC: an ambiguous local time (a DST fold, e.g. Shanghai in
    # 1948) never equals an aware datetime of another zone in Python.
    assert written.ToDatetime(tzinfo=dt.timezone.utc) == at.astimezone(dt.timezone.utc)

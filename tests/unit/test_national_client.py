"""The client's national envelope (client/national.py): inf_time is China
Standard Time whatever the client machine's zone."""

from __future__ import annotations

import datetime as dt

from medsettle.client.national import settle_envelope
from medsettle.ledger.clock import CHINA_TZ
from medsettle.v1 import settlement_pb2 as pb


def bill() -> pb.SettleRequest:
    return pb.SettleRequest(msgid="M1", fixmedins_code="H13010100001", psn_no="P1", insuplc_admdvs="130100")


def test_an_aware_inf_time_is_written_in_china_time() -> None:
    at_utc = dt.datetime(2026, 10, 15, 2, 30, 0, tzinfo=dt.timezone.utc)
    assert settle_envelope(bill(), inf_time=at_utc)["inf_time"] == "2026-10-15 10:30:00"


def test_a_naive_inf_time_is_taken_as_china_time() -> None:
    assert settle_envelope(bill(), inf_time=dt.datetime(2026, 10, 15, 10, 30))["inf_time"] == "2026-10-15 10:30:00"


def test_the_default_inf_time_is_now_in_china_time() -> None:
    before = dt.datetime.now(CHINA_TZ).replace(microsecond=0, tzinfo=None)
    stamped = dt.datetime.strptime(settle_envelope(bill())["inf_time"], "%Y-%m-%d %H:%M:%S")
    after = dt.datetime.now(CHINA_TZ).replace(tzinfo=None)
    assert before <= stamped <= after

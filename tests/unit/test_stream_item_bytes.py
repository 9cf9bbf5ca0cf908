"""A settled SettleStream item is answered with bytes built around the
writer's SettleResult bytes (server/servicer.py): they must be exactly
what the message would serialize to, so every client reads the same."""

from __future__ import annotations

import pytest

from medsettle.server.app import _canned_result
from medsettle.server.servicer import settled_item_bytes
from medsettle.server.status import OK_ITEM
from medsettle.v1 import settlement_pb2 as pb


@pytest.mark.parametrize("seq", [0, 1, 127, 128, 300, 2**31, 2**62])
@pytest.mark.parametrize("msgid", ["", "H4401010000120261125000000001", "医保-Ω"])
def test_the_bytes_are_the_message_serialized(seq: int, msgid: str) -> None:
    result = _canned_result()
    message = pb.SettleStreamResponse(seq=seq, msgid=msgid, status=OK_ITEM, result=result)
    built = settled_item_bytes(seq, msgid, result.SerializeToString())
    assert built == message.SerializeToString()
    assert pb.SettleStreamResponse.FromString(built) == message


def test_a_large_result_keeps_its_length_prefix() -> None:
    result = pb.SettleResult(setl_id="S1", line_splits=[pb.LineSplit(feedetl_sn=str(i)) for i in range(2_000)])
    built = settled_item_bytes(7, "M", result.SerializeToString())
    assert pb.SettleStreamResponse.FromString(built).result == result

"""server/request_bytes.py reads untrusted SettleRequest bytes without
upb: for any bytes it must give the Bill convert.bill_from_pb gives for
upb's parse of them, or refuse (DecodeError) exactly where upb refuses.
Differential, on arbitrary bytes, on well-formed requests mutated, and on
field soups built to reach each rule (wire types, groups and their depth,
overlong and oversized varints, tags and lengths, bad UTF-8, repeated and
merged fields, lengths past their message). Run compiled and interpreted
(CI runs the suite both ways)."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medsettle.ledger.settlement.model import Bill
from medsettle.server.convert import bill_from_pb
from medsettle.server.request_bytes import bill_of
from medsettle.v1 import settlement_pb2 as pb

from tests.unit.test_convert_shapes import requests

PROPS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(parse: Any, data: bytes) -> Any:
    """The Bill's every field with its type (True is not 1, a VisitType not
    its int), or the refusal."""
    try:
        bill = parse(data)
    except DecodeError:
        return "DecodeError"
    assert isinstance(bill, Bill)
    return [(f.name, type(getattr(bill, f.name)), getattr(bill, f.name)) for f in dataclasses.fields(Bill)]


def assert_alike(data: bytes) -> Any:
    expected = outcome(lambda d: bill_from_pb(pb.SettleRequest.FromString(d)), data)
    assert outcome(bill_of, data) == expected
    return expected


def varint(value: int, extra: int = 0) -> bytes:
    """value's varint, made `extra` bytes longer than needed (still the same value to a reader)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value == 0 and extra == 0:
            out.append(byte)
            return bytes(out)
        if value == 0:
            extra -= 1
        out.append(byte | 0x80)


FIELD_NUMBERS = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 99, 2047, 536_870_911])
VARINT_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 127, 128, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1), st.integers(2**64, 2**70))


@st.composite
def soups(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A message of fields chosen to reach every rule of the wire format."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        number, wire_type = draw(FIELD_NUMBERS), draw(st.integers(0, 7) if draw(st.integers(0, 9)) else st.integers(0, 2))
        tag = number << 3 | wire_type
        out += varint(tag, draw(st.sampled_from([0, 0, 0, 1, 4, 5])))
        if wire_type == 0:
            out += varint(draw(VARINT_VALUES) % 2**70, draw(st.sampled_from([0, 0, 1, 3])))
        elif wire_type == 1:
            out += draw(st.binary(min_size=0, max_size=9))
        elif wire_type == 5:
            out += draw(st.binary(min_size=0, max_size=5))
        elif wire_type == 2:
            body = draw(st.one_of(
                st.text(max_size=8).map(str.encode),
                st.binary(max_size=8),
                st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xe4\xb8"]),
                soups(depth + 1) if depth < 3 else st.just(b""),
            ))
            out += varint(len(body) + draw(st.sampled_from([0, 0, 0, 0, 1, -1])) if body else len(body),
                          draw(st.sampled_from([0, 0, 0, 1, 4, 5]))) + body
        elif wire_type == 3:
            if depth < 3:
                out += draw(soups(depth + 1))
            if draw(st.integers(0, 5)):
                out += varint(draw(st.sampled_from([number, number, number, 1, 99])) << 3 | 4)
        # wire types 4, 6 and 7: the tag alone
    return bytes(out)


@PROPS
@given(st.binary(max_size=120))
def test_arbitrary_bytes_read_alike(data: bytes) -> None:
    assert_alike(data)


@PROPS
@given(soups())
@example(b"\x0a\x01\xff")  # bad UTF-8
@example(b"\x0a\x03\xed\xa0\x80")  # an encoded surrogate
@example(b"\x20" + b"\xff" * 9 + b"\x7f")  # a 10-byte varint: the bits past 64 dropped
@example(b"\x20" + b"\xff" * 10 + b"\x01")  # 11 bytes
@example(b"\x88\x80\x80\x80\x00\x01")  # a 5-byte tag
@example(b"\x88\x80\x80\x80\x80\x00\x01")  # 6 bytes
@example(b"\x88\x80\x80\x80\x10\x01")  # a tag past 2**32
@example(b"\x0a\x80\x80\x80\x80\x00")  # a 5-byte length
@example(b"\x3b\x3c")  # fee_lines as a group: an unknown field
@example(b"\x0b\x05\xf0\x90\x80\x80\x0c")  # field number 0 inside a group: skipped with it
@example(b"\x0b\x03\x00\x00\x04\x0c")  # ... a group of field number 0 inside one too
@example(b"\x3a\x02\x00\x00")  # ... but not inside a fee line
@example(b"\x3a\x01\x0c")  # an end of group inside a fee line
@example(b"\x7a\x03\x0a\x01a\x7a\x03\x12\x01b")  # prescriptions merge
@example(b"\x7a\x00")  # an empty prescription is a prescription
@example(b"\x40\x80\x80\x80\x80\x10")  # acct_used_flag 2**32: true, though its low 32 bits are 0
@example(b"\x40" + b"\x80" * 9 + b"\x01")  # ... and 2**63
@example(b"\x20\x80\x80\x80\x80\x10")  # insutype 2**32: its low 32 bits, 0
@example(b"\x7a\x06\x20\xff\xff\xff\xff\x0f")  # valid_days 2**32 - 1: -1
def test_field_soups_read_alike(data: bytes) -> None:
    assert_alike(data)


def test_groups_nest_to_the_same_depth() -> None:
    for depth in range(95, 103):
        group = b"\x9b\x06" * depth + b"\x9c\x06" * depth  # field 99, start and end
        assert_alike(group)
        fee_line = b"\x3a" + varint(len(group)) + group
        assert_alike(fee_line)
        item = b"\x1a" + varint(len(group)) + group
        prescription = b"\x1a" + varint(len(item)) + item
        assert_alike(b"\x7a" + varint(len(prescription)) + prescription)
    assert assert_alike(b"\x9b\x06" * 101 + b"\x9c\x06" * 101) == "DecodeError"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(requests()).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "repeat"]))
        if how == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and at < len(data):
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x0C, 0x0B, 0x3A, 0x7A]))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif how == "delete":
            del data[at:at + draw(st.integers(1, 4))]
        elif how == "cut":
            del data[at:]
        else:
            data += data[at:]
    return bytes(data)


@PROPS
@given(mutated())
def test_mutated_requests_read_alike(data: bytes) -> None:
    assert_alike(data)


@settings(max_examples=300, deadline=None)
@given(requests(), requests())
def test_well_formed_and_concatenated_requests_read_alike(first: pb.SettleRequest, second: pb.SettleRequest) -> None:
    assert assert_alike(first.SerializeToString()) != "DecodeError"
    # Two messages one after the other are one message: scalars last, lines added, prescriptions merged.
    assert assert_alike(first.SerializeToString() + second.SerializeToString()) != "DecodeError"

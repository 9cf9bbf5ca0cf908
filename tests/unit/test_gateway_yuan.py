"""Yuan in the gateway's envelope <-> integer fen: exact, never through a float."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.server.gateway.yuan import MAX_INTEGER_DIGITS, NotYuan, Yuan, dumps, fen_of_yuan, loads

FAST = settings(max_examples=500, deadline=None)
FEN = st.integers(min_value=-(10 ** (MAX_INTEGER_DIGITS + 2)) + 1, max_value=10 ** (MAX_INTEGER_DIGITS + 2) - 1)


@FAST
@given(FEN)
def test_every_fen_amount_survives_fen_to_envelope_to_fen(fen: int) -> None:
    text = dumps({"output": {"setlinfo": {"medfee_sumamt": Yuan(fen)}}})
    read = loads(text)["output"]["setlinfo"]["medfee_sumamt"]
    assert isinstance(read, Decimal)  # a JSON number is never a float here
    assert fen_of_yuan(read) == fen


@FAST
@given(FEN)
def test_every_fen_amount_survives_as_a_string(fen: int) -> None:
    number = dumps(Yuan(fen))
    assert fen_of_yuan(number) == fen  # the same text, sent as a string
    assert fen_of_yuan(loads(f'"{number}"')) == fen


@FAST
@given(FEN, st.integers(min_value=1, max_value=9), st.integers(min_value=3, max_value=30))
def test_a_non_zero_digit_beyond_the_fen_is_refused(fen: int, digit: int, place: int) -> None:
    text = dumps(Yuan(fen)) + "0" * (place - 3) + str(digit)
    with pytest.raises(NotYuan, match="at most two decimals"):
        fen_of_yuan(loads(text))


@pytest.mark.parametrize(("value", "fen"), [
    (Decimal("4.52"), 452), ("4.52", 452), (4, 400), ("0.23", 23), ("-0.23", -23), (Decimal("1378.15"), 137815),
    (Decimal("4.520"), 452), ("4.520", 452), (Decimal("1E+3"), 100_000), (Decimal("0E+100"), 0), ("0", 0),
    (Decimal("0.1"), 10), ("-0", 0),
])
def test_amounts_in_yuan(value: object, fen: int) -> None:
    assert fen_of_yuan(value) == fen


def test_rounding_is_never_silent() -> None:
    # 28 significant digits would round this to 1.00 under Decimal's default context.
    with pytest.raises(NotYuan):
        fen_of_yuan(Decimal("1.000000000000000000000000000001"))
    with pytest.raises(NotYuan):
        fen_of_yuan("0.001")


@pytest.mark.parametrize("value", [
    True, False, None, 4.52, [], {}, "4.5.2", "1e3", " 4.52", "4.52 ", "+4.52", "", "NaN", "¥4.52",
    Decimal("NaN"), Decimal("Infinity"), Decimal("1E+15"), 10**15, "1234567890123456",
])
def test_what_is_not_an_amount_is_refused(value: object) -> None:
    with pytest.raises(NotYuan):
        fen_of_yuan(value)


def test_answers_write_two_decimals_and_keep_text() -> None:
    assert dumps({"a": Yuan(452), "b": [Yuan(-23), Yuan(0)], "c": "中文", "d": None, "e": 1, "f": True}) == \
        '{"a":4.52,"b":[-0.23,0.00],"c":"中文","d":null,"e":1,"f":true}'


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": 1, "a": 2}', "[1,]", "{'a': 1}"])
def test_what_json_does_not_allow_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_a_text_is_never_read_as_an_amount() -> None:
    texts = {"a": "x\x00\x01123", "b": "\x01123", "c": 'x"\x00\x01123', "d": "\x00\x01123", "e": "\x00\x01T1",
             "\x00\x01123": ["\x00\x01D4.5", 'q"\x00\x01T']}
    assert loads(dumps(texts)) == texts  # a request's msgid echoed back may be any of these


# Texts made of the characters the amounts' marking is built from, so that they meet it often.
AWKWARD_TEXT = st.text(alphabet=st.sampled_from(["\x00", "\x01", '"', "\\", "1", ".", "-", "D", "T", ":", ",", "[", "{", "a"]))
ANSWERS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(), AWKWARD_TEXT, FEN.map(Yuan)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(), AWKWARD_TEXT), inner, max_size=4)),
    max_leaves=12,
)


def _as_read(value: object) -> object:
    """What a JSON reader (numbers as decimals) must read back from an answer."""
    if isinstance(value, Yuan):
        return Decimal(value.fen).scaleb(-2)
    if isinstance(value, dict):
        return {key: _as_read(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_read(item) for item in value]
    return value


@FAST
@given(ANSWERS)
def test_every_answer_is_json_that_reads_back_as_written(answer: object) -> None:
    assert json.loads(dumps(answer), parse_float=Decimal) == _as_read(answer)

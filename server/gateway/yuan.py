"""Yuan in the envelope <-> integer fen, exactly: never through a float.

The national interface writes money as yuan with at most two decimals, as a
JSON number (read with parse_float=Decimal, so 4.52 is Decimal('4.52')) or a
string ("4.52"). Answers write them back as JSON numbers with two decimals,
from the integer fen (ledger.money.yuan formats them).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from medsettle.ledger.money import yuan

MAX_INTEGER_DIGITS = 15  # 10^15 yuan: beyond every bound of every field (the caller bounds each field)
# Optional minus, digits, optional decimals; no exponent, no spaces, no plus.
_YUAN_TEXT = re.compile(r"^-?[0-9]{1,%d}(\.[0-9]{1,20})?\Z" % MAX_INTEGER_DIGITS)


class NotYuan(ValueError):
    """A value that is not an amount in yuan; the message says why (no field name: the caller adds it)."""


def fen_of_yuan(value: object) -> int:
    """Integer fen of a yuan amount given as an int, a Decimal (a JSON number
    read with parse_float=Decimal) or a string; NotYuan if it is none of
    these, has a non-zero digit beyond the fen, is not finite or has more
    than 15 integer digits. Each field's own bounds are the caller's.
    Exact: the Decimal's digits are read, no arithmetic that could round."""
    if isinstance(value, bool):  # a bool is an int to Python, not an amount
        raise NotYuan("must be an amount in yuan, got a boolean")
    if isinstance(value, int):
        if abs(value) >= 10**MAX_INTEGER_DIGITS:
            raise NotYuan(f"must have at most {MAX_INTEGER_DIGITS} digits before the point")
        return value * 100
    if isinstance(value, str):
        if not _YUAN_TEXT.match(value):
            raise NotYuan(f"must be yuan with at most two decimals, got {value[:30]!r}")
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise NotYuan(f"must be an amount in yuan (a number or a string), got {_json_type(value)}")
    if not value.is_finite():
        raise NotYuan("must be a finite amount")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return 0
    if value.adjusted() >= MAX_INTEGER_DIGITS:
        raise NotYuan(f"must have at most {MAX_INTEGER_DIGITS} digits before the point")
    if exponent < -2:  # digits beyond the fen must all be zero (4.520 is 4.52)
        if any(digits[exponent + 2:]):
            raise NotYuan(f"must have at most two decimals, got {_shown(value)}")
        digits, exponent = digits[:exponent + 2], -2
    fen = int("".join(map(str, digits)) or "0") * 10 ** (exponent + 2)
    return -fen if sign else fen


def _shown(value: Decimal) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:30] + "..."


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for refusals."""
    names = {dict: "an object", list: "an array", type(None): "null", float: "a float"}
    return names.get(type(value), type(value).__name__)


class Yuan:
    """An amount in fen to be written into an answer as a JSON number in yuan."""

    __slots__ = ("fen",)

    def __init__(self, fen: int) -> None:
        self.fen = fen

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Yuan) and other.fen == self.fen

    def __repr__(self) -> str:
        return f"Yuan({yuan(self.fen)})"


# A Yuan is written by json.dumps (in C) as a string of this marker and its
# fen, then replaced by its number. Only a string's opening quote (after
# `{`, `[`, `:` or `,` in compact JSON, or at the start) is matched, never an
# escaped quote inside a text; a text that itself starts with the marker
# (a request's msgid echoed back may) is written with a "T" after the
# marker, which the replacement drops again, so it comes out as it went in.
_MARK = "\x00\x01"
_MARKED = re.compile(r'(?<![^{\[:,])"\\u0000\\u0001(?:(T)|(D?)([-+.0-9Ee]+)")')


def dumps(value: Any) -> str:
    """JSON text of an answer: like json.dumps (compact, UTF-8 kept), with
    each Yuan written as a number with two decimals (4.52, -0.23, 0.00) and
    each finite Decimal as its own digits."""
    text = json.dumps(_marked(value), ensure_ascii=False, separators=(",", ":"))
    return _MARKED.sub(_unmarked, text)


def _unmarked(match: re.Match[str]) -> str:
    text, decimal, digits = match.groups()
    if text:
        return '"\\u0000\\u0001'  # the text's own first characters, escaped as json.dumps escapes them
    return digits if decimal else yuan(int(digits))


def _marked(value: Any) -> Any:
    if isinstance(value, dict):
        return {_text(key): _marked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_marked(item) for item in value]
    if isinstance(value, Yuan):
        return f"{_MARK}{value.fen}"
    if isinstance(value, Decimal) and value.is_finite():  # as read by loads: written back as it came
        return f"{_MARK}D{value}"
    return _text(value)


def _text(value: Any) -> Any:
    return f"{_MARK}T{value[len(_MARK):]}" if isinstance(value, str) and value.startswith(_MARK) else value


def loads(text: str) -> Any:
    """A request body's JSON with every non-integer number as a Decimal
    (never a float); NaN and Infinity refused, as JSON has none; a key given
    twice in one object refused (which of the two counts would be a guess)."""
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key[:40]!r} appears twice in one object")
        result[key] = value
    return result

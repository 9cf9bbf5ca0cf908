# cython: annotation_typing=True
"""SettleResult bytes written straight from a Settlement, without a upb
message: once per answered settlement, where building the message cost
most of the answer (each keyword looked up by name, each line split added
on its own, then all serialized).

The bytes are exactly those of convert.result_pb(s).SerializeToString()
(the property test holds them equal): proto3's wire format, fields in
field-number order, a scalar at its default left out, a negative integer
as ten bytes, setl_time and each line split length-prefixed. A value a
field cannot hold (an amount beyond int64, an enum beyond int32) raises
OverflowError, as upb refuses it.

Compiled (medsettle/compiled.py), every field goes into a C buffer as C integers and UTF-8 pointers, with no
Python object per field; interpreted, the same code writes a bytearray."""

from __future__ import annotations

import datetime as dt

try:
    import cython
except ImportError:  # interpreted without Cython installed
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_FromStringAndSize
    from cython.cimports.cpython.datetime import datetime, import_datetime, timedelta
    from cython.cimports.cpython.unicode import PyUnicode_AsUTF8AndSize
    from cython.cimports.libc.stdlib import free, malloc
    from cython.cimports.libc.string import memcpy, memmove

    from cython.cimports.medsettle.ledger.settlement.model import LineSplit, Settlement, Split

    import_datetime()

_VARINT = cython.declare(cython.int, 0)  # wire types
_LENGTH_DELIMITED = cython.declare(cython.int, 2)
_INT64_MIN = cython.declare(cython.longlong, -(1 << 63))
_INT64_MAX = cython.declare(cython.longlong, (1 << 63) - 1)
_INT32_MIN = cython.declare(cython.longlong, -(1 << 31))
_INT32_MAX = cython.declare(cython.longlong, (1 << 31) - 1)
_UINT64_MASK = cython.declare(cython.ulonglong, (1 << 64) - 1)  # two's complement: a negative integer's varint is its 64 bits
_MOST_PER_VALUE = cython.declare(cython.Py_ssize_t, 12)  # a tag (field numbers below 2048: 2 bytes) and a 10-byte varint
_FIRST_BYTES = cython.declare(cython.Py_ssize_t, 1024)  # inside _Out (its `first`): a 3-line result takes about 300
_SECONDS_PER_DAY = cython.declare(cython.longlong, 86_400)
_UTC = cython.declare(object, dt.timezone.utc)


@cython.nonecheck(True)
def settle_result(s: Settlement) -> bytes:
    """The SettleResult bytes of a Settlement (model.py)."""
    out: _Out = _Out()
    start: cython.Py_ssize_t
    split: Split
    line: LineSplit
    out.text(1, s.setl_id)  # type: ignore[attr-defined]
    out.text(2, s.msgid)  # type: ignore[attr-defined]
    out.text(3, s.fixmedins_code)  # type: ignore[attr-defined]
    out.text(4, s.psn_no)  # type: ignore[attr-defined]
    out.int32(5, s.insutype)  # type: ignore[attr-defined]
    out.text(6, s.insuplc_admdvs)  # type: ignore[attr-defined]
    out.text(7, s.mdtrtarea_admvs)  # type: ignore[attr-defined]
    out.int32(8, s.clr_type)  # type: ignore[attr-defined]
    out.int32(9, s.pay_loc)  # type: ignore[attr-defined]
    out.int32(10, s.kind)  # type: ignore[attr-defined]
    out.text(11, s.orig_setl_id)  # type: ignore[attr-defined]
    _timestamp(out, 12, s.setl_time)  # type: ignore[attr-defined]
    out.text(13, s.setlym)  # type: ignore[attr-defined]
    split = s.split  # type: ignore[attr-defined]
    out.int64(20, split.medfee_sumamt_fen)
    out.int64(21, split.fulamt_ownpay_amt_fen)
    out.int64(22, split.overlmt_selfpay_fen)
    out.int64(23, split.preselfpay_amt_fen)
    out.int64(24, split.inscp_scp_amt_fen)
    out.int64(25, split.act_pay_dedc_fen)
    out.int64(26, split.hifp_pay_fen)
    out.int64(27, split.fund_pay_sumamt_fen)
    out.int64(28, split.psn_part_amt_fen)
    out.int64(29, split.hosp_part_amt_fen)
    out.int64(30, split.acct_pay_fen)
    out.int64(31, split.psn_cash_pay_fen)
    out.int64(32, split.balc_fen)
    for line in split.line_splits:
        start = out.begin(40)
        out.text(1, line.feedetl_sn)
        out.int32(2, line.category)
        out.int64(3, line.det_item_fee_sumamt_fen)
        out.int64(4, line.fulamt_ownpay_amt_fen)
        out.int64(5, line.overlmt_selfpay_fen)
        out.int64(6, line.preselfpay_amt_fen)
        out.int64(7, line.inscp_scp_amt_fen)
        out.end(start)
    for flag in s.audit_flags:  # type: ignore[attr-defined]
        out.repeated_text(41, flag)
    out.text(42, s.payee_code)  # type: ignore[attr-defined]
    return out.done()


@cython.cfunc
def _timestamp(out: _Out, field: cython.int, at: datetime) -> cython.void:
    """A google.protobuf.Timestamp (seconds, nanos) of an aware datetime:
    the instant at - 1970-01-01 UTC, as result_pb writes it (always present,
    even at the epoch). From the datetime's fields: no timedelta but the
    zone's offset where it is not UTC."""
    seconds: cython.longlong
    micros: cython.longlong
    start: cython.Py_ssize_t
    zone = at.tzinfo
    if zone is None:
        raise TypeError("setl_time must be timezone-aware")
    seconds = (_days_from_civil(at.year, at.month, at.day) * _SECONDS_PER_DAY
               + at.hour * 3600 + at.minute * 60 + at.second)
    micros = at.microsecond
    if zone is not _UTC:
        offset: timedelta = at.utcoffset()
        seconds -= offset.days * _SECONDS_PER_DAY + offset.seconds
        micros -= offset.microseconds
        if micros < 0:
            micros += 1_000_000
            seconds -= 1
    start = out.begin(field)
    out.int64(1, seconds)
    out.int32(2, micros * 1000)
    out.end(start)


@cython.cfunc
@cython.exceptval(check=False)
def _days_from_civil(year: cython.longlong, month: cython.longlong, day: cython.longlong) -> cython.longlong:
    """Days from 1970-01-01 to a proleptic Gregorian date of years 1-9999
    (H. Hinnant's days_from_civil; every quotient of non-negative numbers)."""
    if month <= 2:
        year -= 1
    era: cython.longlong = year // 400
    year_of_era: cython.longlong = year - era * 400
    day_of_year: cython.longlong = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era: cython.longlong = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


@cython.cfunc
@cython.exceptval(check=False)
def _varint_size(value: cython.ulonglong) -> cython.int:
    size: cython.int = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


@cython.final
@cython.cclass
class _Out:
    """The message being written: compiled, a C buffer (its first bytes
    inside this object, more on the heap); interpreted, a bytearray kept as
    long as the capacity. Each write first makes room for the most it can
    take (ensure), so the byte writes need no checks."""

    data: cython.p_char
    first: cython.char[1024]  # _FIRST_BYTES
    array: bytearray
    n: cython.Py_ssize_t
    capacity: cython.Py_ssize_t

    def __init__(self) -> None:
        self.n = 0
        self.capacity = _FIRST_BYTES
        if cython.compiled:
            self.data = self.first
        else:
            self.array = bytearray(_FIRST_BYTES)

    def __dealloc__(self) -> None:  # compiled only: frees a buffer grown onto the heap
        if self.data != self.first:
            free(self.data)

    @cython.cfunc
    def done(self) -> bytes:
        if cython.compiled:
            return PyBytes_FromStringAndSize(self.data, self.n)  # type: ignore[no-any-return]
        return bytes(self.array[:self.n])

    @cython.cfunc
    @cython.exceptval(-1)
    def ensure(self, room: cython.Py_ssize_t) -> cython.int:
        need: cython.Py_ssize_t = self.n + room
        if need <= self.capacity:
            return 0
        capacity: cython.Py_ssize_t = max(need, 2 * self.capacity)
        if cython.compiled:
            grown: cython.p_char = cython.cast(cython.p_char, malloc(capacity))
            if not grown:
                raise MemoryError()
            memcpy(grown, self.data, self.n)
            if self.data != self.first:
                free(self.data)
            self.data = grown
        else:
            self.array.extend(bytes(capacity - self.capacity))
        self.capacity = capacity
        return 0

    @cython.cfunc
    @cython.inline
    @cython.exceptval(check=False)
    def put(self, byte: cython.uchar) -> cython.void:
        if cython.compiled:
            self.data[self.n] = byte
        else:
            self.array[self.n] = byte
        self.n += 1

    @cython.cfunc
    @cython.inline
    @cython.exceptval(check=False)
    def varint(self, value: cython.ulonglong) -> cython.void:
        """An unsigned varint: 7 bits a byte, least significant first."""
        while value >= 0x80:
            self.put((value & 0x7F) | 0x80)
            value >>= 7
        self.put(value)

    @cython.cfunc
    @cython.exceptval(-1)
    def int64(self, field: cython.int, value: cython.longlong) -> cython.int:
        """An int64 field (left out at 0). Compiled, taking value as a C
        long long raises OverflowError beyond int64; interpreted, the check does."""
        if value == 0:
            return 0
        if value < _INT64_MIN or value > _INT64_MAX:
            raise OverflowError(f"field {field}: {value} is beyond int64")
        self.ensure(_MOST_PER_VALUE)
        self.varint(field << 3 | _VARINT)
        self.varint(value & _UINT64_MASK)
        return 0

    @cython.cfunc
    @cython.exceptval(-1)
    def int32(self, field: cython.int, value: cython.longlong) -> cython.int:
        """An int32 or enum field (left out at 0); a negative one takes ten bytes, as in int64."""
        if value < _INT32_MIN or value > _INT32_MAX:
            raise OverflowError(f"field {field}: {value} is beyond int32")
        return self.int64(field, value)

    @cython.cfunc
    @cython.exceptval(-1)
    def text(self, field: cython.int, text: object) -> cython.int:
        """A string field, left out when empty."""
        return self.string(field, text, False)

    @cython.cfunc
    @cython.exceptval(-1)
    def repeated_text(self, field: cython.int, text: object) -> cython.int:
        """One string of a repeated field: written even when empty."""
        return self.string(field, text, True)

    @cython.cfunc
    @cython.exceptval(-1)
    def string(self, field: cython.int, text: object, when_empty: cython.bint) -> cython.int:
        size: cython.Py_ssize_t
        if cython.compiled:
            utf8: cython.p_const_char = PyUnicode_AsUTF8AndSize(text, cython.address(size))  # the str's own, cached
        else:
            encoded = text.encode()  # type: ignore[attr-defined]
            size = len(encoded)
        if size == 0 and not when_empty:
            return 0
        self.ensure(_MOST_PER_VALUE + size)
        self.varint(field << 3 | _LENGTH_DELIMITED)
        self.varint(size)
        if cython.compiled:
            memcpy(self.data + self.n, utf8, size)
        else:
            self.array[self.n:self.n + size] = encoded
        self.n += size
        return 0

    @cython.cfunc
    @cython.exceptval(-1)
    def begin(self, field: cython.int) -> cython.Py_ssize_t:
        """A nested message's tag and one byte for its length, which end()
        writes once the content after it is: where the content starts."""
        self.ensure(_MOST_PER_VALUE)
        self.varint(field << 3 | _LENGTH_DELIMITED)
        self.put(0)
        return self.n

    @cython.cfunc
    @cython.exceptval(-1)
    def end(self, start: cython.Py_ssize_t) -> cython.int:
        """The length of the message begun at start; a length of 128 or
        more takes more than its one byte, and the content moves up."""
        length: cython.Py_ssize_t = self.n - start
        more: cython.Py_ssize_t = _varint_size(length) - 1
        if more:
            self.ensure(more)
            if cython.compiled:
                memmove(self.data + start + more, self.data + start, length)
            else:
                self.array[start:start] = bytes(more)
                del self.array[-more:]  # the bytearray stays as long as the capacity
        end: cython.Py_ssize_t = self.n + more
        self.n = start - 1
        self.varint(length)
        self.n = end
        return 0

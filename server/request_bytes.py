# cython: annotation_typing=True
"""The Bill of SettleRequest bytes, read straight from the bytes: once per
settlement, where parsing into a upb message and then reading its fields
one by one by name (convert.bill_from_pb) cost half the request's share.

The bytes are untrusted, so this reader takes exactly what upb takes and
refuses (DecodeError) exactly what upb refuses; a differential test on
arbitrary and mutated bytes holds the two equal. What upb does, and so
this: fields in any order, the last of a scalar field wins; each fee_lines
field adds a line; prescription fields merge (the last scalar wins, items
add); a known field number with another wire type is an unknown field;
unknown fields are skipped (a group to its matching end, nested at most
100 deep with the messages around it); a tag of at most 5 bytes, below
2**32, field number not 0 (but inside a group); a length of at most 5 bytes within its message;
a varint of at most 10 bytes (bits past 64 dropped); an int32 or enum the
low 32 bits, a bool any non-zero; every string valid UTF-8.

Compiled (medsettle/compiled.py), the integers are read as C integers and
each string decoded from the bytes in place; interpreted, the same code."""

from __future__ import annotations

from typing import Optional

from google.protobuf.message import DecodeError

from medsettle.ledger.settlement.model import Bill, FeeLine, Prescription, VisitType

try:
    import cython
except ImportError:  # interpreted without Cython installed
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING
    from cython.cimports.cpython.unicode import PyUnicode_DecodeUTF8

_MAX_DEPTH = cython.declare(cython.int, 100)  # upb's: messages and groups nested in the request
_UINT64_MASK = cython.declare(cython.ulonglong, (1 << 64) - 1)
# C constants: Cython takes a literal past 2**31 for a Python int
_UINT32_MAX = cython.declare(cython.longlong, (1 << 32) - 1)
_INT32_SIGN = cython.declare(cython.longlong, 1 << 31)
_VISIT_TYPES = {int(v): v for v in VisitType}  # an unknown visit type stays an int, as bill_from_pb leaves it
_VARINT = cython.declare(cython.int, 0)  # wire types
_FIXED64 = cython.declare(cython.int, 1)
_LENGTH_DELIMITED = cython.declare(cython.int, 2)
_START_GROUP = cython.declare(cython.int, 3)
_END_GROUP = cython.declare(cython.int, 4)
_FIXED32 = cython.declare(cython.int, 5)


def bill_of(data: object) -> Bill:
    """The Bill of a SettleRequest's bytes, as convert.bill_from_pb gives it
    for upb's parse of them; DecodeError where upb raises it."""
    r: _Reader = _Reader(data)
    tag: cython.longlong
    field: cython.longlong
    insutype: cython.longlong = 0
    visit_type: cython.longlong = 0
    acct_used_flag: cython.bint = False
    delivery_fee_fen: cython.longlong = 0
    msgid = fixmedins_code = psn_no = insuplc_admdvs = diag_code = prior_offline_diag_date = ""
    rx_id = prescribing_fixmedins_code = ecert_token = pharmacist_id = ""
    fee_lines = []
    prescription: Optional[_Prescribed] = None
    while r.at < r.end:
        tag = r.tag()
        field = tag >> 3
        if tag & 7 == _LENGTH_DELIMITED:
            if field == 1:
                msgid = r.text()
            elif field == 2:
                fixmedins_code = r.text()
            elif field == 3:
                psn_no = r.text()
            elif field == 5:
                insuplc_admdvs = r.text()
            elif field == 7:
                fee_lines.append(_fee_line(r))
            elif field == 9:
                diag_code = r.text()
            elif field == 10:
                prior_offline_diag_date = r.text()
            elif field == 11:
                rx_id = r.text()
            elif field == 12:
                prescribing_fixmedins_code = r.text()
            elif field == 14:
                ecert_token = r.text()
            elif field == 15:
                if prescription is None:
                    prescription = _Prescribed()
                prescription.merge(r)
            elif field == 16:
                pharmacist_id = r.text()
            else:
                r.skip(tag)
        elif tag & 7 == _VARINT:
            if field == 4:
                insutype = r.int32()
            elif field == 6:
                visit_type = r.int32()
            elif field == 8:
                acct_used_flag = r.varint() != 0
            elif field == 13:
                delivery_fee_fen = r.int64()
            else:
                r.skip(tag)
        else:
            r.skip(tag)
    return Bill(
        msgid, fixmedins_code, psn_no, insutype, insuplc_admdvs, _VISIT_TYPES.get(visit_type, visit_type),
        tuple(fee_lines), acct_used_flag, diag_code, prior_offline_diag_date, rx_id, prescribing_fixmedins_code,
        delivery_fee_fen, ecert_token, "", 0, None if prescription is None else prescription.value(), pharmacist_id,
    )


@cython.cfunc
def _fee_line(r: _Reader) -> FeeLine:
    tag: cython.longlong
    cnt: cython.longlong = 0
    pric_fen: cython.longlong = 0
    feedetl_sn = hilist_code = ""
    saved_end: cython.Py_ssize_t = r.enter()
    while r.at < r.end:
        tag = r.tag()
        if tag == 1 << 3 | _LENGTH_DELIMITED:
            feedetl_sn = r.text()
        elif tag == 2 << 3 | _LENGTH_DELIMITED:
            hilist_code = r.text()
        elif tag == 3 << 3 | _VARINT:
            cnt = r.int64()
        elif tag == 4 << 3 | _VARINT:
            pric_fen = r.int64()
        else:
            r.skip(tag)
    r.leave(saved_end)
    return FeeLine(feedetl_sn, hilist_code, cnt, pric_fen)


@cython.final
@cython.cclass
class _Prescribed:
    """A prescription as its fields arrive: every occurrence of the field merges into it."""

    rx_id: str
    prescriber_id: str
    items: list
    valid_days: cython.longlong

    def __init__(self) -> None:
        self.rx_id = self.prescriber_id = ""
        self.items = []
        self.valid_days = 0

    @cython.cfunc
    @cython.exceptval(-1)
    def merge(self, r: _Reader) -> cython.int:
        tag: cython.longlong
        saved_end: cython.Py_ssize_t = r.enter()
        while r.at < r.end:
            tag = r.tag()
            if tag == 1 << 3 | _LENGTH_DELIMITED:
                self.rx_id = r.text()
            elif tag == 2 << 3 | _LENGTH_DELIMITED:
                self.prescriber_id = r.text()
            elif tag == 3 << 3 | _LENGTH_DELIMITED:
                self.items.append(_prescribed_item(r))
            elif tag == 4 << 3 | _VARINT:
                self.valid_days = r.int32()
            else:
                r.skip(tag)
        r.leave(saved_end)
        return 0

    def value(self) -> Prescription:
        return Prescription(self.rx_id, self.prescriber_id, tuple(self.items), self.valid_days)


@cython.cfunc
def _prescribed_item(r: _Reader) -> tuple:
    tag: cython.longlong
    cnt: cython.longlong = 0
    hilist_code = ""
    saved_end: cython.Py_ssize_t = r.enter()
    while r.at < r.end:
        tag = r.tag()
        if tag == 1 << 3 | _LENGTH_DELIMITED:
            hilist_code = r.text()
        elif tag == 2 << 3 | _VARINT:
            cnt = r.int64()
        else:
            r.skip(tag)
    r.leave(saved_end)
    return (hilist_code, cnt)


def _corrupt() -> DecodeError:
    return DecodeError("Error parsing message with type 'medsettle.v1.SettleRequest'")


@cython.final
@cython.cclass
class _Reader:
    """The bytes being read: `at` the next byte, `end` the end of the
    message being read (the request's or a nested one's), `depth` how many
    messages and groups are open around it."""

    data: bytes
    buf: cython.p_const_uchar
    at: cython.Py_ssize_t
    end: cython.Py_ssize_t
    depth: cython.int

    def __init__(self, data: object) -> None:
        if not isinstance(data, bytes):  # compiled, the buffer is read through a bytes object's own pointer
            raise TypeError(f"SettleRequest bytes expected, not {type(data).__name__}")
        self.data = data
        self.at = 0
        self.end = len(data)
        self.depth = 0
        if cython.compiled:
            self.buf = cython.cast(cython.p_const_uchar, PyBytes_AS_STRING(data))

    @cython.cfunc
    @cython.exceptval(-1)
    def byte(self) -> cython.int:
        if self.at >= self.end:
            raise _corrupt()
        self.at += 1
        if cython.compiled:
            return self.buf[self.at - 1]
        return self.data[self.at - 1]

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def varint(self) -> cython.ulonglong:
        """At most 10 bytes; bits past 64 are dropped, as upb drops them."""
        value: cython.ulonglong = 0
        shift: cython.int
        byte: cython.ulonglong
        for shift in range(0, 70, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value & _UINT64_MASK
        raise _corrupt()

    @cython.cfunc
    @cython.exceptval(-1)
    def uint32(self) -> cython.longlong:
        """A tag or a length: at most 5 bytes and below 2**32."""
        value: cython.longlong = 0
        shift: cython.int
        byte: cython.longlong
        for shift in range(0, 35, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value > _UINT32_MAX:
                    raise _corrupt()
                return value
        raise _corrupt()

    @cython.cfunc
    @cython.exceptval(-1)
    def tag(self) -> cython.longlong:
        tag: cython.longlong = self.uint32()
        if tag >> 3 == 0:
            raise _corrupt()
        return tag

    @cython.cfunc
    @cython.exceptval(-1)
    def size(self) -> cython.Py_ssize_t:
        """A length-delimited field's length, which its message holds."""
        size: cython.longlong = self.uint32()
        if size > self.end - self.at:
            raise _corrupt()
        return size

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def int64(self) -> cython.longlong:
        value: cython.ulonglong = self.varint()
        if value >> 63:  # two's complement
            return -cython.cast(cython.longlong, ~value & _UINT64_MASK) - 1
        return cython.cast(cython.longlong, value)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def int32(self) -> cython.longlong:
        low: cython.longlong = self.varint() & _UINT32_MAX
        if low >= _INT32_SIGN:
            low -= _UINT32_MAX + 1
        return low

    @cython.cfunc
    def text(self) -> str:
        size: cython.Py_ssize_t = self.size()
        start: cython.Py_ssize_t = self.at
        self.at += size
        try:
            if cython.compiled:
                return PyUnicode_DecodeUTF8(cython.cast(cython.p_char, self.buf + start), size, cython.NULL)
            return self.data[start:start + size].decode()
        except UnicodeDecodeError:
            raise _corrupt() from None

    @cython.cfunc
    @cython.exceptval(-1)
    def enter(self) -> cython.Py_ssize_t:
        """Reads into a nested message (after its tag): what leave() takes back."""
        size: cython.Py_ssize_t = self.size()
        saved_end: cython.Py_ssize_t = self.end
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _corrupt()
        self.end = self.at + size
        return saved_end

    @cython.cfunc
    @cython.exceptval(-1)
    def leave(self, saved_end: cython.Py_ssize_t) -> cython.int:
        self.depth -= 1
        self.end = saved_end
        return 0

    @cython.cfunc
    @cython.exceptval(-1)
    def skip(self, tag: cython.longlong) -> cython.int:
        """An unknown field's value (after its tag)."""
        wire_type: cython.longlong = tag & 7
        if wire_type == _VARINT:
            self.varint()
        elif wire_type == _FIXED64:
            self.advance(8)
        elif wire_type == _LENGTH_DELIMITED:
            self.advance(self.size())
        elif wire_type == _FIXED32:
            self.advance(4)
        elif wire_type == _START_GROUP:
            self.skip_group(tag >> 3)
        else:  # an end of group outside one, or wire type 6 or 7
            raise _corrupt()
        return 0

    @cython.cfunc
    @cython.exceptval(-1)
    def skip_group(self, field: cython.longlong) -> cython.int:
        tag: cython.longlong
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _corrupt()
        while True:
            tag = self.uint32()  # field number 0 too: upb skips a group's fields without looking at it
            if tag & 7 == _END_GROUP:
                if tag >> 3 != field:
                    raise _corrupt()
                break
            self.skip(tag)
        self.depth -= 1
        return 0

    @cython.cfunc
    @cython.exceptval(-1)
    def advance(self, size: cython.Py_ssize_t) -> cython.int:
        if size > self.end - self.at:
            raise _corrupt()
        self.at += size
        return 0

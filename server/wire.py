"""The bytes the gRPC process and the writer exchange: each write is the
request message as gRPC received it (SettleRequest, PreSettleRequest or
ReverseRequest bytes) and each answer the SettleResult bytes, or a compact
refusal. The writer parses, validates, splits and builds the result; the
gRPC process only frames bytes, so its share of a settlement costs little
more than an echo call.

A batch travels as one frame, its answers as another, in the same order:

    frame   = u32 body length, body
    batch   = u32 count, count x (u8 kind, u32 length, request bytes)
    answers = u32 count, count x (u32 length, answer bytes)
    answer  = b"\\x00" + SettleResult bytes | b"\\x01" + refusal JSON

All integers little-endian. A refusal is rare, so it is plain JSON:
[reason, message, [[field, description], ...], metadata]."""

from __future__ import annotations

import json
import struct
from typing import Iterable, Sequence

from medsettle.ledger.errors import FieldViolation, Reason, Refused

SETTLE, PRE_SETTLE, REVERSE = 0, 1, 2  # the kinds of write request
KINDS = (SETTLE, PRE_SETTLE, REVERSE)
_OK, _REFUSED = b"\x00", b"\x01"
_U32 = struct.Struct("<I")
_ITEM = struct.Struct("<BI")  # kind, length
FRAME_HEADER_BYTES = _U32.size
# A frame at most this long; the writer's bound on a batch's request bytes
# (WriterLimits.max_batch_bytes) keeps frames far below it.
MAX_FRAME_BYTES = (1 << 32) - 1

Write = tuple[int, bytes]  # (kind, request bytes)


class FrameError(ValueError):
    """Bytes that are no frame of this protocol: the peer is broken."""


def settled(result: bytes) -> bytes:
    """The answer of a write that settled: its SettleResult bytes."""
    return _OK + result


def refused(refusal: Refused) -> bytes:
    """The answer of a write that was refused, as compact JSON."""
    return _REFUSED + json.dumps(
        [refusal.reason.value, refusal.message, [[v.field, v.description] for v in refusal.violations],
         refusal.metadata], separators=(",", ":")).encode("ascii")  # ASCII escapes: no text can fail to encode after a commit


def result_of(answer: bytes) -> bytes:
    """The SettleResult bytes of an answer; raises its Refused if it was refused."""
    if answer[:1] == _OK:
        return answer[1:]
    reason, message, violations, metadata = json.loads(answer[1:].decode("utf-8"))
    raise Refused(Reason(reason), message, [FieldViolation(f, d) for f, d in violations], metadata)


def response_bytes(result: bytes) -> bytes:
    """SettleResponse, PreSettleResponse and ReverseResponse bytes around a
    SettleResult: each has it as field 1 (tag 0x0a, then its length)."""
    return b"\x0a" + _varint(len(result)) + result


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"a frame of {len(body)} bytes is more than {MAX_FRAME_BYTES}")
    return _U32.pack(len(body)) + body


def batch_body(writes: Sequence[Write]) -> bytes:
    parts = [_U32.pack(len(writes))]
    for kind, data in writes:
        parts.append(_ITEM.pack(kind, len(data)))
        parts.append(data)
    return b"".join(parts)


def answers_body(answers: Sequence[bytes]) -> bytes:
    parts = [_U32.pack(len(answers))]
    for answer in answers:
        parts.append(_U32.pack(len(answer)))
        parts.append(answer)
    return b"".join(parts)


def writes_of(body: bytes) -> list[Write]:
    """The writes of a batch body; FrameError if it is not one."""
    return _items(body, _ITEM)  # type: ignore[return-value]


def answers_of(body: bytes) -> list[bytes]:
    """The answers of an answers body; FrameError if it is not one."""
    return _items(body, _U32)  # type: ignore[return-value]


def _items(body: bytes, header: struct.Struct) -> list[tuple[int, bytes] | bytes]:
    """Each item of a body: (kind, bytes) where its header has a kind
    before the length (_ITEM), else its bytes alone (_U32). Slices of the
    body itself, no memoryview: one copy per item (once per write)."""
    size, unpack, with_kind = header.size, header.unpack_from, header is _ITEM
    count, at = _count(body)
    items: list[tuple[int, bytes] | bytes] = []
    for _ in range(count):
        if at + size > len(body):
            raise FrameError("a body ends inside an item's header")
        fields = unpack(body, at)
        at += size
        end = at + fields[-1]
        if end > len(body):
            raise FrameError("a body ends inside an item")
        items.append((fields[0], body[at:end]) if with_kind else body[at:end])
        at = end
    _whole(body, at)
    return items


def _count(body: bytes) -> tuple[int, int]:
    if len(body) < _U32.size:
        raise FrameError("a body shorter than its count")
    return _U32.unpack_from(body, 0)[0], _U32.size


def _whole(body: bytes, at: int) -> None:
    if at != len(body):
        raise FrameError(f"{len(body) - at} bytes after the last item")


class FrameReader:
    """Cuts a byte stream into frame bodies, whatever the reads' boundaries:
    a frame split across reads waits for its rest, many in one read come out
    together."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The bodies of the frames completed by data, in order."""
        buffer = self._buffer
        buffer += data
        bodies = []
        at = 0
        while len(buffer) - at >= FRAME_HEADER_BYTES:
            (length,) = _U32.unpack_from(buffer, at)
            end = at + FRAME_HEADER_BYTES + length
            if end > len(buffer):
                break
            bodies.append(bytes(buffer[at + FRAME_HEADER_BYTES:end]))
            at = end
        if at:
            del buffer[:at]
        return bodies

    def pending_bytes(self) -> int:
        """Bytes of a frame begun and not yet whole."""
        return len(self._buffer)

"""How often the writer ran a batch again, for /metrics: counted by the
SettlementProcessor where the batches run (the writer process, or the
server's writer thread), read by the scrape in the server process.

Two counters in a small shared memory file (an anonymous memfd; a deleted
temporary file where there is none), which the writer child inherits as a
file descriptor: a scrape sends no message to the writer, and the writer
adds two stores per batch. A replacement child adds to what the dead one
counted, so the counters only grow."""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from typing import Any, Callable

_COUNTS = struct.Struct("<qq")  # conflict reruns, key reruns


class RerunCounts:
    """The counters' memory; `fd` passes it to a child (RerunCounts(fd) there)."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd, self._memory = shared_memory("medsettle-writer-reruns", _COUNTS.size, fd)
        self._base = self.read()  # what writers before this one counted

    def publish(self, conflicts: int, key_reruns: int) -> None:
        """This writer's totals so far (SettlementProcessor.conflicts, .key_reruns)."""
        _COUNTS.pack_into(self._memory, 0, self._base[0] + conflicts, self._base[1] + key_reruns)

    def read(self) -> tuple[int, int]:
        """(batches run again after a write conflict with another writer, after a key taken for new was stored)."""
        conflicts, key_reruns = _COUNTS.unpack_from(self._memory, 0)
        return conflicts, key_reruns

    def close(self) -> None:
        self._memory.close()
        os.close(self.fd)


def counted(run_body: Callable[[bytes], bytes], processor: Any, counts: RerunCounts) -> Callable[[bytes], bytes]:
    """run_body (WriteRequests.run_body) that publishes the processor's
    rerun counts after each batch, before its answers leave."""
    def run(body: bytes) -> bytes:
        try:
            return run_body(body)
        finally:
            counts.publish(processor.conflicts, processor.key_reruns)
    return run


def shared_memory(name: str, size: int, fd: int | None = None) -> tuple[int, mmap.mmap]:
    """size bytes of memory that a child shares by inheriting the descriptor:
    a new memory named name, or the one fd (inherited) stands for."""
    if fd is None:
        fd = _anonymous_file(name)
        os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


def _anonymous_file(name: str) -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create(name)
    handle, path = tempfile.mkstemp(prefix=f"{name}-")
    os.unlink(path)
    return handle

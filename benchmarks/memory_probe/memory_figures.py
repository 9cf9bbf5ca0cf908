"""A process's memory by kind, from inside it (benchmarks/writer_memory.py
and the probe in sitecustomize.py here): RssAnon (/proc/self/status),
Python's allocated blocks, what tracemalloc traces, SQLite's own heap
(sqlite3_memory_used: page caches, prepared statements), glibc malloc's
bytes in use, free in its arenas and mmapped (mallinfo2), its arenas (one
per thread that allocated), and each arena's size and free bytes
(malloc_info). Imports nothing of medsettle."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

MIB = 1 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL(None)
_sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")  # the one sqlite3 loaded
_sqlite.sqlite3_memory_used.restype = ctypes.c_int64
_libc.mallinfo2.restype = _MallInfo2
_libc.open_memstream.restype = ctypes.c_void_p
_libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
_libc.fclose.argtypes = (ctypes.c_void_p,)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def malloc_info() -> ET.Element:
    """glibc's malloc_info XML: one <heap> per arena."""
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = _libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    _libc.malloc_info(0, stream)
    _libc.fclose(stream)
    text = ctypes.string_at(buffer, size.value).decode()
    _libc.free(buffer)
    return ET.fromstring(text)


def per_arena() -> str:
    """Each arena's memory from the system and the free bytes in it (MiB): "nr:system/free"."""
    parts = []
    for heap in malloc_info().iter("heap"):
        free = sum(int(total.get("size", 0)) for total in heap.findall("total"))
        system = next(int(s.get("size", 0)) for s in heap.findall("system") if s.get("type") == "current")
        parts.append(f"{heap.get('nr')}:{system / MIB:.1f}/{free / MIB:.1f}")
    return " ".join(parts)


def figures() -> dict[str, float]:
    info = _libc.mallinfo2()
    return {
        "rss_anon": status_kib("RssAnon") / 1024,
        "py_blocks_k": sys.getallocatedblocks() / 1000,
        "traced": tracemalloc.get_traced_memory()[0] / MIB if tracemalloc.is_tracing() else 0.0,
        "sqlite": _sqlite.sqlite3_memory_used() / MIB,
        "malloc_used": (info.uordblks + info.hblkhd) / MIB,
        "malloc_free": info.fordblks / MIB,
        "mmapped": info.hblkhd / MIB,
        "arenas": len(list(malloc_info().iter("heap"))),
    }


COLUMNS = ("rss_anon", "py_blocks_k", "traced", "sqlite", "malloc_used", "malloc_free", "mmapped", "arenas")


def header() -> str:
    return " ".join(f"{name:>11s}" for name in COLUMNS) + "  arena:system/free (MiB; blocks in thousands)"


def line(now: dict[str, float]) -> str:
    return " ".join(f"{now[name]:>11.1f}" for name in COLUMNS) + "  " + per_arena()


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int, out: Any = None) -> None:
    for stat in after.compare_to(before, "traceback")[:count]:
        if stat.size_diff <= 0:
            break
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback)
        print(f"      {stat.size_diff / 1024:>+9.1f} KiB {stat.count_diff:>+8d} blocks  {frames}", file=out or sys.stdout)


_sqlite.sqlite3_db_status.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                      ctypes.POINTER(ctypes.c_int), ctypes.c_int)
# sqlite3_db_status's verbs (sqlite3.h): bytes of the page cache, the schema, the prepared statements
_DB_STATUS = {"page_cache": 1, "schema": 2, "statements": 3}


def sqlite_connection(conn: Any) -> dict[str, float]:
    """A sqlite3.Connection's heap by use (MiB). The sqlite3* handle is the
    first field after the object's header in CPython's pysqlite_Connection."""
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    found = {}
    for name, verb in _DB_STATUS.items():
        current, highest = ctypes.c_int(), ctypes.c_int()
        _sqlite.sqlite3_db_status(handle, verb, ctypes.byref(current), ctypes.byref(highest), 0)
        found[name] = current.value / MIB
    return found

"""Timestamps of the write path, off by default: with MEDSETTLE_PHASE_TRACE
set to a directory, the Settle handler, the group-commit writer and the
writer process each keep one row per call or batch in memory and write it
there as a TSV file when they stop (`<part>-<pid>.tsv`);
benchmarks/phase_trace.py turns the files into the time a call spends in
each phase. Times are time.perf_counter() seconds (CLOCK_MONOTONIC on
Linux, one clock for every process of the machine).

When the variable is not set, `tracer()` returns None and the traced code
pays one `is not None` test per call or batch."""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

ENV = "MEDSETTLE_PHASE_TRACE"


class PhaseTrace:
    """Rows of one part of one process, written once at exit (or dump())."""

    def __init__(self, part: str, columns: tuple[str, ...], directory: str) -> None:
        self.path = os.path.join(directory, f"{part}-{os.getpid()}.tsv")
        self.columns = columns
        self.rows: list[tuple[Any, ...]] = []
        self.clock = time.perf_counter
        self.marks: dict[int, Any] = {}  # times kept between two calls of one trace (by id() of an object)
        self._header_written = False  # one header per file, however many dumps append to it
        atexit.register(self.dump)

    def add(self, *row: Any) -> None:
        self.rows.append(row)

    def dump(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        with open(self.path, "a", encoding="ascii") as out:
            if not self._header_written:
                out.write("\t".join(self.columns) + "\n")
                self._header_written = True
            for row in rows:
                out.write("\t".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in row) + "\n")


def tracer(part: str, columns: tuple[str, ...]) -> PhaseTrace | None:
    """A trace for this part if MEDSETTLE_PHASE_TRACE names a directory, else None."""
    directory = os.environ.get(ENV)
    return PhaseTrace(part, columns, directory) if directory else None

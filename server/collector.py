"""Python's cyclic garbage collector in the processes that serve: once a
process has started (reference data, gRPC, the ledger's caches loaded),
what it built is frozen out of the collector's walks, and a young
collection runs every GC_YOUNG_OBJECTS allocations instead of Python's
default 700, which under load ran one every few calls.

Why: under load the calls and batches in flight live long enough to be
promoted, so full collections came often, and each walked everything the
start built. Measured under `medsettle load` on a shared machine: in the
gRPC process two to three full collections in each 6 s unary settle
phase, each stopping the event loop (and so every call) for 25-160 ms; in
the writer process under stream and batch load four full collections (up
to 153 ms, the writer stopped) and about a fifth of its CPU time in
collections. Garbage without cycles is freed at once as ever; garbage in
cycles waits for the next young collection, a bounded number of objects."""

from __future__ import annotations

import gc

GC_YOUNG_OBJECTS = 10_000


def settle_collector() -> None:
    """Called once a process has started and before its load."""
    gc.collect()  # what the start left as garbage is freed, not frozen
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_OBJECTS, middle, old)

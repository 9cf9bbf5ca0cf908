"""`serve` settles the cyclic collector once the server runs
(server/collector.py): the objects of the start are frozen out of its walks and
young collections come every GC_YOUNG_OBJECTS allocations, not Python's
default 700 (full collections stopped the event loop under load)."""

from __future__ import annotations

import asyncio
import gc
import signal

from medsettle.ledger.service import SettlementService
from medsettle.server.app import RunningServer, serve
from medsettle.server.collector import GC_YOUNG_OBJECTS

PYTHON_DEFAULTS = (700, 10, 10)


def test_serve_freezes_the_start_and_raises_the_young_threshold(tmp_path, clock) -> None:
    thresholds, sigint = gc.get_threshold(), signal.getsignal(signal.SIGINT)
    gc.unfreeze()  # Python's own settings, whatever a test before left
    gc.set_threshold(*PYTHON_DEFAULTS)
    service = SettlementService(tmp_path / "ledger.db", clock)
    seen: dict[str, int] = {}

    async def stop_at_once(running: RunningServer) -> bool:  # after the start, before any call
        seen["freeze_count"] = gc.get_freeze_count()
        return False

    try:
        asyncio.run(serve("127.0.0.1:0", service, on_ready=stop_at_once))
        assert seen["freeze_count"] > 0
        assert gc.get_threshold() == (GC_YOUNG_OBJECTS, *PYTHON_DEFAULTS[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        signal.signal(signal.SIGINT, sigint)  # serve's loop leaves Python's default handler, whatever was there

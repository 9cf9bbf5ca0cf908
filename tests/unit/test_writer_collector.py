"""The writer process settles its cyclic collector before its first batch
(server/collector.py): what it loaded (the ledger's caches, the reference
data) is frozen out of the collector's walks and young collections come
every GC_YOUNG_OBJECTS allocations. The child's loop runs here, in the
test's own process, on pipes: told to stop at once, it opens the ledger,
says it is ready and returns."""

from __future__ import annotations

import gc
import os
import signal
from multiprocessing.connection import Connection

from medsettle.ledger.service import open_reference
from medsettle.ledger.storage.rerun_counts import RerunCounts
from medsettle.ledger.storage.sqlite import SqliteLedgerStore
from medsettle.ledger.storage.wal_figures import WalFigures
from medsettle.ledger.storage.writer_process import _READY, _STOP, _serve_batches
from medsettle.server import wire
from medsettle.server.collector import GC_YOUNG_OBJECTS
from tests.service.test_serve_collector import PYTHON_DEFAULTS


def test_the_writer_loop_freezes_what_it_loaded_before_its_first_batch(tmp_path, clock) -> None:
    db = tmp_path / "ledger.db"
    store = SqliteLedgerStore(db)
    open_reference(store, clock)
    store.close()
    commands_in, commands = os.pipe()
    answers, answers_out = os.pipe()
    os.write(commands, wire.frame(_STOP))
    thresholds, sigint = gc.get_threshold(), signal.getsignal(signal.SIGINT)
    gc.unfreeze()  # Python's own settings, whatever a test before left
    gc.set_threshold(*PYTHON_DEFAULTS)
    try:
        _serve_batches(Connection(commands_in, writable=False), Connection(answers_out, readable=False), str(db), clock,
                       None, Connection(os.dup(RerunCounts().fd)), Connection(os.dup(WalFigures().fd)))
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_OBJECTS, *PYTHON_DEFAULTS[1:])
        assert wire.FrameReader().feed(os.read(answers, 64)) == [_READY]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        signal.signal(signal.SIGINT, sigint)
        for fd in (commands, answers):
            os.close(fd)

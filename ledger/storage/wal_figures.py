"""What the SQLite WAL checkpointer (WalCheckpointer in sqlite.py) did,
for /metrics, the logs and health: published by the checkpointer's thread
after each of its rounds, where the writer runs (the writer process, or
the server's writer thread), read by the server process.

One small record in a shared memory file, as RerunCounts
(ledger/storage/rerun_counts.py): the writer child inherits it as a file
descriptor, so a scrape sends no message to the writer. A replacement
child's checkpointer adds to what the dead one counted.

Which checkpointer publishes: the writer names, before it opens its
ledger, where the figures of that file go (`publish_checkpoints`); the
first checkpointer on that file in the process takes them (`take`) and
gives them back when it stops. Other stores on the same file in the same
process (a command's, a test's) publish nothing."""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass

from medsettle.ledger.storage.rerun_counts import shared_memory

ERROR_BYTES = 240  # the latest failure's text, cut to this many UTF-8 bytes
# sequence (odd while being written), checkpoints, failures, restarts, WAL
# frames, frames not copied, bound, started (0/1), the times (Unix seconds)
# the WAL was last seen wholly copied, since when rounds fail and since when
# the WAL is held back far beyond its bound (0: not), the latest failure's length and text
_RECORD = struct.Struct(f"<qqqqqqqqdddq{ERROR_BYTES}s")
_READ_TRIES = 100


@dataclass(frozen=True, slots=True)
class WalState:
    """The checkpointer's figures after its last round."""

    checkpoints: int = 0  # PASSIVE checkpoints run (whether they copied every frame or stopped short)
    failures: int = 0  # rounds that failed (no connection, an error), and RESTART checkpoints that did
    restarts: int = 0  # RESTART checkpoints that had the WAL written again from its start
    wal_frames: int = 0  # frames in the WAL at the last checkpoint
    uncopied_frames: int = 0  # of those, not yet copied into the database file (a reader holds them back)
    bound_frames: int = 0  # the WAL's bound (WAL_BOUND_FRAMES)
    started: bool = False  # a checkpointer has published (the writer's first batch began)
    copied_at_s: float = 0.0  # Unix time the WAL was last seen wholly copied
    failing_since_s: float = 0.0  # Unix time of the first of the failed rounds in a row; 0: the last round did not fail
    held_back_since_s: float = 0.0  # Unix time since which the WAL is far beyond its bound and not all copied; 0: not
    last_failure: str = ""  # the latest failure's cause (kept after a round succeeds)


class WalFigures:
    """The record's memory; `fd` passes it to a child (WalFigures(fd) there)."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd, self._memory = shared_memory("medsettle-wal-figures", _RECORD.size, fd)
        self._sequence = 0

    def publish(self, state: WalState) -> None:
        """Writes state (one writer: the checkpointer's thread); a reader
        meanwhile sees an odd sequence and reads again."""
        sequence = self._sequence = self._sequence + 1 | 1
        failure = state.last_failure.encode("utf-8", "replace")[:ERROR_BYTES].decode("utf-8", "ignore").encode("utf-8")
        self._memory[:8] = struct.pack("<q", sequence)
        _RECORD.pack_into(self._memory, 0, sequence, state.checkpoints, state.failures, state.restarts,
                          state.wal_frames, state.uncopied_frames, state.bound_frames, int(state.started),
                          state.copied_at_s, state.failing_since_s, state.held_back_since_s, len(failure), failure)
        self._sequence += 1
        self._memory[:8] = struct.pack("<q", self._sequence)

    def read(self) -> WalState:
        """The last state published (a default WalState before the first)."""
        for _ in range(_READ_TRIES):
            fields = _RECORD.unpack_from(self._memory, 0)
            if not fields[0] & 1 and struct.unpack_from("<q", self._memory, 0)[0] == fields[0]:
                break
        (_, checkpoints, failures, restarts, frames, uncopied, bound, started, copied_at_s, failing_since_s,
         held_back_since_s, failure_length, failure) = fields
        return WalState(checkpoints, failures, restarts, frames, uncopied, bound, bool(started), copied_at_s,
                        failing_since_s, held_back_since_s, failure[:failure_length].decode("utf-8"))

    def close(self) -> None:
        self._memory.close()
        os.close(self.fd)


_published: dict[str, WalFigures] = {}  # ledger file -> where its checkpointer publishes, until one takes it
_lock = threading.Lock()


def _key(path: str) -> str:
    return os.path.realpath(path)


def publish_checkpoints(path: str, figures: WalFigures) -> None:
    """The checkpointer of the ledger at path, in this process, publishes to
    figures from now on. What a dead writer published there (a writer
    process replaced) keeps only its counts until this one's checkpointer
    starts (at its first batch): its last state is no longer the present
    one, and its lag would grow on an idle server."""
    writer_gone(figures)
    with _lock:
        _published[_key(path)] = figures


def writer_gone(figures: WalFigures) -> None:
    """The writer that published to figures is gone (a dead writer process,
    seen by the gRPC process; or a new one about to take over): its counts
    stay, its last state is no longer the present one (its lag would grow on
    an idle server, or forever on a fenced ledger)."""
    last = figures.read()
    figures.publish(WalState(checkpoints=last.checkpoints, failures=last.failures, restarts=last.restarts,
                             bound_frames=last.bound_frames, last_failure=last.last_failure))


def take(path: str) -> WalFigures | None:
    """For a checkpointer starting on path: where to publish, if it is the first there."""
    with _lock:
        return _published.pop(_key(path), None)


def give_back(path: str, figures: WalFigures) -> None:
    """A checkpointer that stopped: the next one on path publishes there (adding to its counts)."""
    with _lock:
        _published.setdefault(_key(path), figures)


def withdraw(path: str, figures: WalFigures) -> None:
    """The writer closed: no later checkpointer on path publishes to figures."""
    with _lock:
        if _published.get(_key(path)) is figures:
            del _published[_key(path)]

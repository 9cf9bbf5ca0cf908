"""What the server says of the SQLite WAL checkpointer, which runs where
the writer runs (ledger/storage/sqlite.py WalCheckpointer; its figures
reach this process through ledger/storage/wal_figures.py).

- Logs: `WAL checkpoint failing` (error) when its rounds start failing,
  a reminder at most every STILL_FAILING_LOG_S while they go on, and
  `WAL checkpoint recovered` (info) once one succeeds: never one line per
  failed round. A failure and its recovery between two looks is one
  warning; a recovery and a new failure between two looks (the failing's
  start moved, or checkpoints were counted) is the recovery, then the new
  failing.
- Degraded: a WAL that a reader has held far beyond its bound (the
  checkpointer's HELD_BACK_FACTOR) for HELD_BACK_DEGRADED_S. Settlements
  still commit (the WAL only grows, on disk), so health stays SERVING:
  gRPC health has no third state, and NOT_SERVING would take the server
  out of its load balancer. The reason is logged (`WAL held back;
  degraded`, warning) and /metrics has `medsettle_degraded{reason}`."""

from __future__ import annotations

import time
from typing import Any

from medsettle.ledger.storage.wal_figures import WalFigures, WalState
from medsettle.server.logs import get_logger

HELD_BACK_DEGRADED_S = 60.0  # a WAL held back this long makes the server degraded
STILL_FAILING_LOG_S = 300.0  # while checkpoints keep failing, one reminder at most this often
WAL_HELD_BACK = "wal_held_back"  # the reason label of medsettle_degraded

log = get_logger("medsettle.server.health")


def wal_held_back(state: WalState, now_s: float, after_s: float | None = None) -> str | None:
    """Why the server is degraded by its WAL at now_s, or None."""
    after_s = HELD_BACK_DEGRADED_S if after_s is None else after_s
    if not state.held_back_since_s or now_s - state.held_back_since_s < after_s:
        return None
    return (f"the SQLite WAL has held {state.wal_frames:,} frames ({state.uncopied_frames:,} not yet copied into the "
            f"database file; its bound is {state.bound_frames:,}) for {now_s - state.held_back_since_s:.0f} s: "
            "a reader (a long verify or backup, a read transaction left open) holds it back")


class WalWatch:
    """Looks at the checkpointer's figures (each second, from the health
    watcher) and logs what changed."""

    def __init__(self, figures: WalFigures, logger: Any = None) -> None:
        self._figures = figures
        self._log = logger if logger is not None else log
        first = figures.read()
        self._failures_seen = first.failures
        self._checkpoints_seen = first.checkpoints
        self._failing_from: int | None = None  # failures counted when the logged failing began; None: not failing
        self._failing_since_s = 0.0  # the logged failing's first failed round (its failing_since_s)
        self._reminded_s = 0.0
        self._held_back = False

    def look(self, now_s: float | None = None) -> None:
        now_s = time.time() if now_s is None else now_s
        try:
            state = self._figures.read()
            self._failures(state, now_s)
            self._degraded(state, now_s)
        except Exception as error:  # noqa: BLE001  the health watcher that calls this must go on
            self._log.error("WAL watch failed", detail=f"{type(error).__name__}: {error}")

    def _failures(self, state: WalState, now_s: float) -> None:
        failures_before = self._failures_seen
        new_failures = state.failures - failures_before
        checkpointed = state.checkpoints > self._checkpoints_seen  # a round succeeded since the last look
        self._failures_seen, self._checkpoints_seen = state.failures, state.checkpoints
        if self._failing_from is not None:
            if state.failing_since_s == self._failing_since_s and not checkpointed:  # the same failing goes on
                self._remind(state, now_s)
                return
            # The logged failing ended (a round succeeded), even if another began since the last look:
            # that one's rounds since the last look are counted with it (the figures do not split them).
            ended_at = failures_before if state.failing_since_s else state.failures
            self._log.info("WAL checkpoint recovered", failed_rounds=ended_at - self._failing_from)
            self._failing_from = None
        elif not state.failing_since_s:
            if new_failures > 0:
                self._log.warning("WAL checkpoint failed and recovered", detail=state.last_failure,
                                  failed_rounds=new_failures)
            return
        if state.failing_since_s:  # a failing begins
            self._failing_from = state.failures - max(new_failures, 1)
            self._failing_since_s = state.failing_since_s
            self._reminded_s = now_s
            self._log.error("WAL checkpoint failing", detail=state.last_failure, failed_rounds=new_failures,
                            failing_s=round(now_s - state.failing_since_s, 1))

    def _remind(self, state: WalState, now_s: float) -> None:
        if now_s - self._reminded_s >= STILL_FAILING_LOG_S:
            self._reminded_s = now_s
            assert self._failing_from is not None
            self._log.error("WAL checkpoint still failing", detail=state.last_failure,
                            failed_rounds=state.failures - self._failing_from,
                            failing_s=round(now_s - state.failing_since_s, 1))

    def _degraded(self, state: WalState, now_s: float) -> None:
        reason = wal_held_back(state, now_s)
        if (reason is not None) == self._held_back:
            return
        self._held_back = reason is not None
        if reason is not None:
            self._log.warning("WAL held back; degraded", reason=WAL_HELD_BACK, detail=reason)
        else:
            self._log.info("WAL no longer held back", wal_frames=state.wal_frames,
                           uncopied_frames=state.uncopied_frames)

"""What the server logs and reports of the WAL checkpointer's figures
(server/health.py): one line when checkpoints start failing, a reminder at
most every STILL_FAILING_LOG_S, one when they recover, never one per failed
round; degraded once the WAL is held back for HELD_BACK_DEGRADED_S."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from medsettle.ledger.storage.wal_figures import WalState
from medsettle.server import health
from medsettle.server.health import WalWatch, wal_held_back

T0 = 1_800_000_000.0
HEALTHY = WalState(checkpoints=10, wal_frames=300, bound_frames=4_096, started=True, copied_at_s=T0)


class Figures:
    def __init__(self, state: WalState) -> None:
        self.state = state

    def read(self) -> WalState:
        return self.state


class Lines:
    """A logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))

    def events(self) -> list[tuple[str, str]]:
        return [(level, event) for level, event, _ in self.lines]


def failing(state: WalState, failures: int, since_s: float) -> WalState:
    return replace(state, failures=failures, failing_since_s=since_s, last_failure="database or disk is full")


def test_a_failing_episode_is_one_line_then_a_rare_reminder_then_one_recovery() -> None:
    figures, lines = Figures(HEALTHY), Lines()
    watch = WalWatch(figures, lines)  # type: ignore[arg-type]
    watch.look(T0 + 1)
    assert lines.lines == []
    figures.state = failing(HEALTHY, 3, T0 + 1.5)
    watch.look(T0 + 2)
    for second in range(3, 200):  # a failed round every second or two: no more lines
        figures.state = failing(HEALTHY, 3 + second, T0 + 1.5)
        watch.look(T0 + second)
    assert lines.events() == [("error", "WAL checkpoint failing")]
    assert lines.lines[0][2] == {"detail": "database or disk is full", "failed_rounds": 3, "failing_s": 0.5}
    watch.look(T0 + 2 + health.STILL_FAILING_LOG_S)
    assert lines.events()[1:] == [("error", "WAL checkpoint still failing")]
    assert lines.lines[1][2]["failed_rounds"] == 3 + 199  # every round since the episode began
    figures.state = replace(figures.state, failures=250, failing_since_s=0.0)
    watch.look(T0 + 400)
    watch.look(T0 + 401)
    assert lines.events()[2:] == [("info", "WAL checkpoint recovered")]
    assert lines.lines[2][2] == {"failed_rounds": 250}


def test_a_failure_recovered_between_two_looks_is_one_warning() -> None:
    figures, lines = Figures(replace(HEALTHY, failures=4)), Lines()
    watch = WalWatch(figures, lines)  # type: ignore[arg-type]
    watch.look(T0)
    assert lines.lines == []  # failures counted before the watch began are not news
    figures.state = replace(HEALTHY, failures=5, last_failure="RESTART checkpoint: database is locked")
    watch.look(T0 + 1)
    watch.look(T0 + 2)
    assert lines.lines == [("warning", "WAL checkpoint failed and recovered",
                            {"detail": "RESTART checkpoint: database is locked", "failed_rounds": 1})]


def test_a_recovery_and_a_new_failure_between_two_looks_are_both_logged() -> None:
    """The rounds recovered (a checkpoint counted, the failing's start moved)
    and failed again within one second: the recovery is logged, then the new
    failing, as two episodes, not one failing that went on."""
    figures, lines = Figures(HEALTHY), Lines()
    watch = WalWatch(figures, lines)  # type: ignore[arg-type]
    figures.state = failing(HEALTHY, 3, T0 + 0.5)
    watch.look(T0 + 1)
    again = failing(replace(HEALTHY, checkpoints=HEALTHY.checkpoints + 1), 5, T0 + 1.7)  # one success, then 2 failures
    figures.state = replace(again, last_failure="unable to open database file")
    watch.look(T0 + 2)
    assert lines.events() == [("error", "WAL checkpoint failing"), ("info", "WAL checkpoint recovered"),
                              ("error", "WAL checkpoint failing")]
    assert lines.lines[1][2] == {"failed_rounds": 3}
    assert lines.lines[2][2] == {"detail": "unable to open database file", "failed_rounds": 2, "failing_s": 0.3}
    figures.state = replace(figures.state, failures=6)
    watch.look(T0 + 3)  # the new failing goes on: no line
    figures.state = replace(figures.state, failing_since_s=0.0)
    watch.look(T0 + 4)
    assert lines.events()[3:] == [("info", "WAL checkpoint recovered")]
    assert lines.lines[3][2] == {"failed_rounds": 3}


@pytest.mark.parametrize("moved", ["failing start", "checkpoints"])
def test_either_figure_alone_tells_a_recovery_between_two_looks(moved: str) -> None:
    figures, lines = Figures(HEALTHY), Lines()
    watch = WalWatch(figures, lines)  # type: ignore[arg-type]
    figures.state = failing(HEALTHY, 3, T0 + 0.5)
    watch.look(T0 + 1)
    figures.state = (failing(HEALTHY, 4, T0 + 1.5) if moved == "failing start"
                     else failing(replace(HEALTHY, checkpoints=HEALTHY.checkpoints + 1), 4, T0 + 0.5))
    watch.look(T0 + 2)
    assert lines.events() == [("error", "WAL checkpoint failing"), ("info", "WAL checkpoint recovered"),
                              ("error", "WAL checkpoint failing")]


def test_degraded_only_once_the_wal_is_held_back_long_and_back_when_copied() -> None:
    held = replace(HEALTHY, wal_frames=20_000, uncopied_frames=19_000, held_back_since_s=T0)
    assert wal_held_back(held, T0 + health.HELD_BACK_DEGRADED_S - 1) is None
    reason = wal_held_back(held, T0 + health.HELD_BACK_DEGRADED_S)
    assert reason is not None and "20,000 frames" in reason and "19,000 not yet copied" in reason
    assert wal_held_back(HEALTHY, T0 + 10_000) is None

    figures, lines = Figures(held), Lines()
    watch = WalWatch(figures, lines)  # type: ignore[arg-type]
    watch.look(T0 + 1)
    assert lines.lines == []
    for second in range(60, 70):
        watch.look(T0 + second)
    assert lines.events() == [("warning", "WAL held back; degraded")]
    assert lines.lines[0][2]["reason"] == "wal_held_back"
    figures.state = replace(HEALTHY, wal_frames=20_000)
    watch.look(T0 + 71)
    watch.look(T0 + 72)
    assert lines.events()[1:] == [("info", "WAL no longer held back")]


def test_a_writer_that_never_wrote_says_nothing() -> None:
    figures, lines = Figures(WalState()), Lines()
    watch = WalWatch(figures, lines)  # type: ignore[arg-type]
    for second in range(1_000):
        watch.look(T0 + second)
    assert lines.lines == []

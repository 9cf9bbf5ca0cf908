"""Progress of a long run, reported to whoever draws it (the CLI draws a
bar on a terminal). The ledger only counts; it never prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
EVERY = 1_000  # items between two reports: a report per item would cost more than the item


@dataclass(frozen=True, slots=True)
class Hooks:
    """start(total) once the amount of work is known; advance(done) as it is done."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[int], None] = lambda done: None


NO_PROGRESS = Hooks()


def counted(items: Iterable[T], hooks: Hooks, every: int = EVERY) -> Iterator[T]:
    """The items, reporting hooks.advance every `every` items and for the rest at the end."""
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == every:
            hooks.advance(pending)
            pending = 0
    if pending:
        hooks.advance(pending)

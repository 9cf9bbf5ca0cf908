"""Each person's settled visits of the current China day, as the audit rules
need them (how many, which item codes), kept in the settlement writer's
memory within stated bounds.

Past a bound a person's day is not kept: the writer reads it again from the
ledger's visit log at the person's next batch, and the log holds every
settled visit, so what the rules decide never depends on what is kept.

- MAX_PERSONS persons are kept; past it those who settled least recently
  are forgotten (at a commit, never during a batch).
- A kept day holds at most MAX_ITEMS item codes; a person who billed more
  distinct items today is read from the log at each of their batches.
- The records are shared: persons with the same count of visits and the
  same items hold one record (most persons bill the same few items), so a
  kept person costs a dict entry and its psn_no, not a record and a set.
  MAX_SHARED records, and as many transitions (a record and a bill's item
  codes -> the record after it), are kept for sharing; past it a record is
  built for its person alone, still within MAX_ITEMS.

Measured (tracemalloc): a kept person with a shared record costs about
110 bytes (its psn_no and a dict entry): 5.5 MiB at MAX_PERSONS. The worst
case, every kept person with MAX_ITEMS item codes of their own, about 1.4
KiB each: 70 MiB. All of it is dropped when the day changes.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Sequence

from medsettle.ledger.supervision.rules import DayActivity

MAX_PERSONS = 50_000
MAX_ITEMS = 8
MAX_SHARED = 4096
MAX_SHARED_CODES_TEXT = 512  # a transition is kept for a bill's item codes up to this long, joined

NO_ACTIVITY = DayActivity(0, frozenset())  # nothing settled yet today: shared by every such person


class DayVisits:
    """The kept days of one China day (`day`, YYYY-MM-DD)."""

    __slots__ = ("day", "max_persons", "max_items", "max_shared", "_kept", "_records", "_after")

    def __init__(self, max_persons: int = MAX_PERSONS, max_items: int = MAX_ITEMS,
                 max_shared: int = MAX_SHARED) -> None:
        self.max_persons = max_persons
        self.max_items = max_items
        self.max_shared = max_shared
        self.day = ""
        self._kept: dict[str, DayActivity] = {}
        self._records: dict[tuple[int, frozenset[str]], DayActivity] = {}
        self._after: dict[tuple[DayActivity, str], DayActivity] = {}

    def start(self, day: str) -> None:
        """The day the next batch settles on: a new day forgets every kept one."""
        if day != self.day:
            self.day = day
            self._kept = {}
            self._records = {}
            self._after = {}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, psn_no: str) -> DayActivity | None:
        """The person's day if kept (None: read it from the visit log)."""
        return self._kept.get(psn_no)

    def missing(self, psn_nos: Iterable[str]) -> list[str]:
        """Those of psn_nos whose day is not kept, sorted."""
        kept = self._kept
        return sorted(psn_no for psn_no in psn_nos if psn_no not in kept)

    def record(self, visits: int, items: Iterable[str]) -> DayActivity:
        """The (shared) record of so many visits billing these items."""
        if not visits:
            return NO_ACTIVITY
        codes = items if isinstance(items, frozenset) else frozenset(items)
        key = (visits, codes)
        found = self._records.get(key)
        if found is None:
            found = DayActivity(visits, codes)
            if len(self._records) < self.max_shared and len(codes) <= self.max_items:
                self._records[key] = found
        return found

    def after_visit(self, before: DayActivity, codes_text: str, codes: Sequence[str]) -> DayActivity:
        """The record after one more visit billing codes (codes_text: them
        joined by ",", the key of the transition)."""
        key = (before, codes_text)
        found = self._after.get(key)
        if found is None:
            items = before.items
            found = self.record(before.visits + 1, items if items.issuperset(codes) else items | set(codes))
            if (len(self._after) < self.max_shared and len(codes_text) <= MAX_SHARED_CODES_TEXT
                    and len(found.items) <= self.max_items):
                self._after[key] = found
        return found

    def keep(self, days: dict[str, DayActivity]) -> None:
        """After a commit: the batch's persons' days as they are now, kept
        last (a dict keeps its order). One past MAX_ITEMS is dropped; past
        MAX_PERSONS those kept first are."""
        kept = self._kept
        most = self.max_items
        for psn_no, activity in days.items():
            kept.pop(psn_no, None)
            if len(activity.items) <= most:
                kept[psn_no] = activity
        excess = len(kept) - self.max_persons
        if excess > 0:
            for psn_no in list(islice(kept, excess)):
                del kept[psn_no]

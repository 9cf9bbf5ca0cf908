"""The monthly provincial clearing run: period rules, reconciliation in one
read snapshot (the entries since each hash chain's newest checkpoint one by
one, the month in aggregates computed by the database), then netting and
posting in one transaction that also records the run and a new checkpoint
on each chain checked (a run killed midway leaves nothing)."""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsettle.ledger.clearing import netting
from medsettle.ledger.clearing.period import (
    ClearingRefused,
    check_period_ended,
    check_province,
    clearing_entry_id,
)
from medsettle.ledger.clearing.reconcile import (
    BreakLog,
    DeclaredResult,
    agency_pairs,
    book_breaks,
    checked_from,
    compare_declared,
    in_province_books,
    institution_breaks,
    institution_totals,
    misfiled_breaks,
    missing_entry_breaks,
    read_declared,
    reciprocal_balances,
    settlement_posting_breaks,
    subtract,
    verify_since,
)
from medsettle.ledger.clearing.statement import breaks_report, build_statement, render_json, sha256_text
from medsettle.ledger.clearing.port import ClearingLedger
from medsettle.ledger.clearing.store import ClearingRun
from medsettle.ledger.clock import CHINA_TZ, Clock, period_of
from medsettle.ledger.money import MAX_AMOUNT_FEN
from medsettle.ledger.progress import Hooks
from medsettle.ledger.storage.rows import to_us
from medsettle.ledger.verify import append_checkpoints

CLEARING_KIND = "clearing"
PREPAY_KIND = "prepay"


class Outcome(enum.Enum):
    CLEARED = "cleared"
    ALREADY_CLEARED = "already_cleared"
    DRY_RUN = "dry_run"
    BREAKS = "breaks"


@dataclass(slots=True)
class RunResult:
    outcome: Outcome
    statement_json: str = ""  # the stored bytes (cleared), or the would-be statement (dry run)
    breaks: dict[str, Any] = field(default_factory=dict)  # the breaks report (BREAKS)
    entries_verified: int = 0


def run_clearing(store: ClearingLedger, province: str, period: str, clock: Clock, *, dry_run: bool = False,
                 declared_csv: str | Path | None = None, hooks: Hooks = Hooks()) -> RunResult:
    check_province(province)
    now = clock.now()
    check_period_ended(period, now)
    declared_rows = read_declared(declared_csv) if declared_csv else None
    existing = store.find_run(province, period)
    if existing is not None:
        return RunResult(Outcome.ALREADY_CLEARED, existing.statement_json)

    log = BreakLog()
    with store.snapshot():
        head, head_hash, head_setl_no = store.journal_head()
        # where each chain ends in the snapshot: where a clean run records its checkpoints
        chain_ends = store.chain_heads() or {0: (head, head_hash)}
        # the month's sums run beside the entry-by-entry check (on worker threads where the backend can)
        with contextlib.closing(store.month_sums(period, province)) as sums:
            start = checked_from(store, log)
            hooks.start(store.count_entries_since(start, head))
            verified = verify_since(store, start, head, log, hooks.advance)
            log.extend(missing_entry_breaks(store, start, head_setl_no))
            all_books = sums.balances()
            groups = sums.groups()
        balances = in_province_books(all_books, province)
        log.extend(misfiled_breaks(balances, *store.misfiled_since(period, start), province, start))
        settled = subtract(all_books, store.non_settlement_balances(period))
        log.extend(settlement_posting_breaks(groups, settled, province))
        log.extend(book_breaks(balances, agency_pairs(settled), province))
        institutions = institution_breaks(institution_totals(groups, province), balances, log)
        declared: list[DeclaredResult] = []
        if declared_rows is not None:
            declared = compare_declared(store, period, declared_rows, institutions, log)
        reciprocal = reciprocal_balances(balances, province)
        prepaid = store.prepaid_balances(province)
        mark = store.period_mark(period)
    if log.total:
        return RunResult(Outcome.BREAKS, breaks=breaks_report(province, period, log, declared), entries_verified=verified)

    cleared_at = now.astimezone(CHINA_TZ).isoformat()
    if dry_run:
        plan = netting.clear(province, reciprocal, prepaid)
        statement = build_statement(province, period, cleared_at, None, institutions, reciprocal, plan, declared)
        return RunResult(Outcome.DRY_RUN, render_json(statement), entries_verified=verified)

    with store.posting():
        if store.run_exists(province, period):  # another run won the race while we reconciled
            raise ClearingRefused(f"province {province} period {period} was cleared by another run; "
                                  "run again to print its statement")
        if store.period_appended_since(period, mark):
            raise ClearingRefused(f"period {period} changed while it was reconciled; run again")
        # the prepaid funds are read again under the write lock: a prepayment may have landed
        plan = netting.clear(province, reciprocal, store.prepaid_balances(province))
        entry = store.append_entry(clearing_entry_id(province, period), CLEARING_KIND, period, now, list(plan.postings))
        statement_json = render_json(
            build_statement(province, period, cleared_at, entry, institutions, reciprocal, plan, declared)
        )
        store.record_run(ClearingRun(province, period, entry[0], to_us(now), statement_json, sha256_text(statement_json)))
        # what this run verified is vouched for: the next run checks the entries after it only
        if store.keeps_checkpoints:
            append_checkpoints(store, start, chain_ends, head_setl_no, to_us(now))
    return RunResult(Outcome.CLEARED, statement_json, entries_verified=verified)


def prepay(store: ClearingLedger, province: str, agency: str, amount_fen: int, clock: Clock) -> tuple[int, str]:
    """An insurance-place agency pays into its prepaid fund (one journal entry,
    in the period in which it happens)."""
    check_province(province)
    if not (len(agency) == 6 and agency.isdigit() and netting.in_province(agency, province)):
        raise ClearingRefused(f"--agency must be a 6-digit region code of province {province}, got {agency!r}")
    if not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise ClearingRefused(f"--amount-fen must be between 1 and {MAX_AMOUNT_FEN}, got {amount_fen}")
    now = clock.now()
    with store.posting():
        entry_no, digest = store.append_entry(
            f"PREPAY-{agency}-{to_us(now)}", PREPAY_KIND, period_of(now), now,
            netting.prepay_postings(province, agency, amount_fen),
        )
    return entry_no, digest

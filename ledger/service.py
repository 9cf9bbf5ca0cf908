"""The service layer: the use cases the gRPC server and the CLI call.

Writes go through the single group-commit writer as the bytes gRPC
received (server/wire.py): the writer parses, checks and settles them;
reads run on a small thread pool with their own connections, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

from medsettle.ledger import ecert
from medsettle.ledger.clock import Clock, PERIOD_PATTERN
from medsettle.ledger.errors import FieldViolation, Reason, invalid, refused_field
from medsettle.ledger.progress import NO_PROGRESS, Hooks
from medsettle.ledger.reconcile import StmtResult, Totals, compare_totals
from medsettle.ledger.reference.loader import parse_document, sample_document
from medsettle.ledger.reference.models import ReferenceData
from medsettle.ledger.settlement.model import Settlement
from medsettle.ledger.settlement.process import SettlementProcessor
from medsettle.ledger.settlement.validation import CODE
from medsettle.ledger.storage.backends import connect_read_only, open_ledger
from medsettle.ledger.storage.fence import fenced, refuse_if_fenced
from medsettle.ledger.storage.port import LedgerStore
from medsettle.ledger.storage.writer import GroupCommitWriter, ThreadChannel, WriterLimits
from medsettle.ledger.storage.rerun_counts import RerunCounts, counted
from medsettle.ledger.storage.wal_figures import WalFigures, publish_checkpoints, withdraw
from medsettle.ledger.storage.writer_process import ProcessChannel, WriterProcess
from medsettle.server import wire
from medsettle.server.writes import WriteRequests

LIST_PAGE_SIZE = 500
MAX_LIST_LIMIT = 1_000_000
DEFAULT_LIST_LIMIT = 100_000
READ_THREADS = 2


def open_reference(store: LedgerStore, clock: Clock) -> ReferenceData:
    """The reference data in force; loads the shipped sample on first start."""
    body = store.reference_body()
    if body is None:
        doc = sample_document()
        data, persons = parse_document(doc)
        store.save_reference(json.dumps(doc, ensure_ascii=False), persons, clock.now())
        return data
    return parse_document(json.loads(body))[0]


def reference_in_force(store: LedgerStore) -> ReferenceData:
    """The reference data a server on this ledger uses, read only: the
    stored document, or the shipped sample that its first start loads."""
    body = store.reference_body()
    return parse_document(json.loads(body) if body is not None else sample_document())[0]


def load_reference_file(store: LedgerStore, path: str | Path, clock: Clock,
                        hooks: Hooks = NO_PROGRESS) -> ReferenceData:
    """Loads a user's reference document; it is checked whole before anything
    is stored (hooks hear of the records checked)."""
    from medsettle.ledger.reference.loader import read_document

    doc = read_document(path)
    data, persons = parse_document(doc, hooks)
    store.save_reference(json.dumps(doc, ensure_ascii=False), persons, clock.now())
    return data


class SettlementService:
    def __init__(
        self,
        db_path: str | Path,
        clock: Clock,
        limits: WriterLimits = WriterLimits(),
        ecert_key: bytes | None = None,
        writer_process: bool = False,
    ) -> None:
        self.clock = clock
        # The e-insurance certificate signing key: given, or from the environment (ledger/ecert.py).
        self._ecert_key = ecert_key if ecert_key is not None else ecert.key_from_env()
        self.db = str(db_path)  # as given: a file path, or a URL with its credentials (never shown)
        # The SQLite WAL checkpointer's figures, for /metrics and health
        # (ledger/storage/wal_figures.py): the writer's checkpointer publishes
        # them, in this process with the writer thread (named before the
        # ledger opens), else in the writer process (below).
        self.wal_figures: WalFigures
        refuse_if_fenced(self.db)  # after a failed WAL fsync: not before the operator's runbook (fence.py)
        if not writer_process:
            self.wal_figures = WalFigures()
            publish_checkpoints(self.db, self.wal_figures)
        self.store = open_ledger(db_path)
        self.reference = open_reference(self.store, clock)
        # writer_process: the writer's work runs in a child process (ledger/storage/writer_process.py).
        self.writer_process = WriterProcess(db_path, clock, self._ecert_key) if writer_process else None
        if self.writer_process is not None:
            self.wal_figures = self.writer_process.wal_figures
        self._channel: ProcessChannel | ThreadChannel
        if self.writer_process is not None:
            self._channel = ProcessChannel(self.writer_process)
            self.reruns = self.writer_process.reruns  # batches run again, for /metrics
        else:
            processor = SettlementProcessor(self.store, self.reference, clock)
            self.reruns = RerunCounts()
            self._channel = ThreadChannel(counted(WriteRequests(processor, clock, self._ecert_key,
                                                                self.store.rollback).run_body, processor, self.reruns))
        self.writer = GroupCommitWriter(self._channel, limits)
        self._reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="ledger-read")

    def start(self) -> None:
        """Starts the writer on the running event loop (writes are made on it)."""
        self.writer.start()

    async def drain(self) -> None:
        """Answers every queued write (committed, or refused if the writer
        process is down); then the writer takes no more. A writer process
        being started has a short grace, not its whole start timeout
        (WriterProcess.begin_closing)."""
        if self.writer_process is not None:
            self.writer_process.begin_closing()
        await self.writer.drain()
        self.writer.close()

    def close(self) -> None:
        """Closes, after drain() if the writer was started; blocks: call it off the event loop."""
        if self.writer_process is not None:
            self.writer_process.close()
        if isinstance(self._channel, ThreadChannel):
            self._channel.stop()
        self._reads.shutdown(wait=True)
        # Fenced: a connection that cannot checkpoint stays open while the
        # store's close, else the last close would copy the WAL (what the
        # failed fsync lost, as the page cache or the disk holds it) into the
        # ledger and delete it (ledger/storage/fence.py).
        keep_wal = (connect_read_only(self.db) if self.writer_process is not None
                    and (self.writer_process.fenced is not None or fenced(self.db) is not None) else None)
        try:
            self.store.close()
        finally:
            if keep_wal is not None:
                keep_wal.close()
        withdraw(self.db, self.wal_figures)

    async def _read(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    # ---- writes ------------------------------------------------------
    def submit_write(self, kind: int, request: bytes) -> asyncio.Future[bytes]:
        """Queues a write request as gRPC received it (server/wire.py); the
        future resolves to its answer's bytes after its batch's commit.
        Raises Refused (OVERLOADED) if the writer's queue is full."""
        return self.writer.submit((kind, request))

    async def write(self, kind: int, request: bytes) -> bytes:
        """The SettleResult bytes of a write request once committed; raises its Refused."""
        return wire.result_of(await self.submit_write(kind, request))

    # ---- reads -------------------------------------------------------
    async def get(self, fixmedins_code: str, setl_id: str = "", msgid: str = "") -> Settlement:
        violations: list[FieldViolation] = []
        _check_code(violations, fixmedins_code)
        if bool(setl_id) == bool(msgid):
            violations.append(FieldViolation("key", "give exactly one of setl_id and msgid"))
        _refuse_invalid(violations)
        found = await self._read(self.store.get_settlement, fixmedins_code, setl_id, msgid)
        if found is None:
            raise refused_field(Reason.SETTLEMENT_NOT_FOUND, "setl_id" if setl_id else "msgid", "no such settlement for this institution")
        return found

    async def list_settlements(
        self, fixmedins_code: str, setlym: str, clr_type: int, limit: int
    ) -> AsyncIterator[Settlement]:
        violations: list[FieldViolation] = []
        if fixmedins_code:
            _check_code(violations, fixmedins_code)
        _check_period(violations, setlym)
        if clr_type not in (0, 11, 21, 41):
            violations.append(FieldViolation("clr_type", f"must be 11, 21, 41 or unspecified, got {clr_type}"))
        if not 0 <= limit <= MAX_LIST_LIMIT:
            violations.append(FieldViolation("limit", f"must be 0..{MAX_LIST_LIMIT}, got {limit}"))
        _refuse_invalid(violations)
        async for settlement in self._paged(
            lambda after, size: self.store.list_settlements_page(fixmedins_code, setlym, clr_type, after, size), limit
        ):
            yield settlement

    async def _paged(self, fetch: Any, limit: int) -> AsyncIterator[Any]:
        """Items of fetch(after, size) -> [(cursor, item)], page by page on the
        read threads, at most limit (0: the default) in all."""
        remaining = limit or DEFAULT_LIST_LIMIT
        after = 0
        while remaining > 0:
            page = await self._read(fetch, after, min(LIST_PAGE_SIZE, remaining))
            if not page:
                return
            for cursor, item in page:
                yield item
                after = cursor
            remaining -= len(page)

    async def reconcile_totals(
        self, fixmedins_code: str, setlym: str, clr_type: int, institution: Totals
    ) -> tuple[Totals, StmtResult]:
        violations: list[FieldViolation] = []
        _check_code(violations, fixmedins_code)
        _check_period(violations, setlym)
        if clr_type not in (11, 21, 41):
            violations.append(FieldViolation("clr_type", f"must be 11, 21 or 41, got {clr_type}"))
        if institution.setl_cnt < 0:
            violations.append(FieldViolation("institution_totals.setl_cnt", "must not be negative"))
        _refuse_invalid(violations)
        platform = Totals(*await self._read(self.store.period_totals, fixmedins_code, setlym, clr_type))
        return platform, compare_totals(platform, institution)

    async def list_audit_flags(self, fixmedins_code: str, flag_day: str, limit: int) -> AsyncIterator[dict[str, Any]]:
        """The fund-supervision flags of a day (China time), paged from the database."""
        violations: list[FieldViolation] = []
        if fixmedins_code:
            _check_code(violations, fixmedins_code)
        try:
            if len(flag_day) != 10:
                raise ValueError
            dt.date.fromisoformat(flag_day)
        except ValueError:
            violations.append(FieldViolation("flag_day", f"must be YYYY-MM-DD, got {flag_day[:20]!r}"))
        if not 0 <= limit <= MAX_LIST_LIMIT:
            violations.append(FieldViolation("limit", f"must be 0..{MAX_LIST_LIMIT}, got {limit}"))
        _refuse_invalid(violations)
        async for flag in self._paged(
            lambda after, size: [(f["flag_no"], f) for f in self.store.flags_of_day(flag_day, fixmedins_code, after, size)],
            limit,
        ):
            yield flag

    def writer_down(self) -> str | None:
        """Why writes cannot be taken now (the writer process could not be restarted), or None."""
        return self.writer_process.down if self.writer_process is not None else None

    def writer_unavailable(self) -> str | None:
        """Why writes cannot go through now: the writer process could not be
        restarted (writer_down), or a dead one's replacement is starting
        (writes wait meanwhile); None while they can."""
        if self.writer_process is not None and self.writer_process.starting and self.writer_process.down is None:
            return "restarting the writer process"
        return self.writer_down()

    def storage_unreachable(self) -> str | None:
        """Why the ledger's database cannot be reached now (PostgreSQL), or
        None; blocks up to about a second: call it off the event loop."""
        return self.store.unreachable()

    async def retry_writer(self) -> None:
        """Tries again to start the writer process, if it is down (off the
        loop: a start blocks up to its timeout); writes go to it once it is up."""
        if self.writer_process is not None and self.writer_process.down is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.writer_process.retry_start)
            assert isinstance(self._channel, ProcessChannel)
            self._channel.resume()


def _refuse_invalid(violations: list[FieldViolation]) -> None:
    if violations:
        raise invalid(violations)


def _check_code(violations: list[FieldViolation], code: str) -> None:
    if not CODE.match(code):
        violations.append(FieldViolation("fixmedins_code", "must be an institution code of 1-30 characters"))


def _check_period(violations: list[FieldViolation], setlym: str) -> None:
    if not PERIOD_PATTERN.match(setlym):
        violations.append(FieldViolation("setlym", f"must be YYYY-MM, got {setlym[:20]!r}"))

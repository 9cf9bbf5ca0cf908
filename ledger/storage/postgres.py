"""The ledger on PostgreSQL: several `medsettle serve` processes write one
ledger at once (`sole_writer = False`). How each piece of shared state stays
exact is in docs/postgresql.md ("Several servers, one ledger"); in short:

- idempotency and one reversal: unique indexes; a violation is a
  WriteConflict, the processor runs the batch again and finds the answer;
- a person's balance and year accumulators: the persons row is locked
  (SELECT ... FOR UPDATE, sorted) before they are read; it is the anchor of
  the person's year rows and day activity, so no lost update;
- institution and fund accounts: never locked, postings are inserts and
  balances are sums;
- the host quota: its row is created if missing, then locked;
- numbers: sequences in blocks, unique across servers;
- the hash chain: one per writer (chain_heads), only its writer appends.

The SQL that is the same on both backends is SqliteLedgerStore's, run
through QmarkConnection (SQLite's `?` marks become psycopg's `%s`); what
differs (locking, numbering, the chain, sums, streaming) is here.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any, Iterator

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from medsettle.ledger.chain_checkpoint import Checkpoint
from medsettle.ledger.posting.journal import GENESIS_HASH
from medsettle.ledger.reference.models import Person
from medsettle.ledger.settlement.prescriptions import RxRecord
from medsettle.ledger.storage import pg_connect
from medsettle.ledger.storage.internet_state import SqliteInternetState
from medsettle.ledger.storage.migrations import now_us, on_postgres
from medsettle.ledger.storage.port import BatchWrite, NotALedgerError, PersonState, StorageError, WriteConflict
from medsettle.ledger.storage.rows import JournalRow
from medsettle.ledger.storage.sqlite import SqliteLedgerStore, chunks, marks

# Settlement and entry numbers are taken a block per batch from a sequence
# (one round trip, no shared row): a batch holds at most --writer-batch
# (10,000) commands, each needing at most one number of each kind.
NUMBER_BLOCK = 16_384
READ_POOL_SIZE = 8  # read connections per process (the service reads on 8 threads)
READ_WAIT_S = 5.0  # a read waits at most this long for a connection
PROBE_WAIT_S = 1.0  # health's probe of the database
# Another writer holds what this batch needs: waiting on a lock longer than
# this is a conflict (the batch is run again), never a hang.
LOCK_TIMEOUT_MS = 10_000
QUOTA_LOCK_CLASS = 0x7175  # advisory lock class of a host quota (host, year)
# Held shared by a batch from taking its numbers to its end; a clearing run
# holds it exclusively while its snapshot begins, so no batch that took its
# numbers before the snapshot commits after it (a checkpoint vouches for
# every settlement up to the snapshot's last number).
NUMBERS_LOCK = (0x6E75, 0)
CONFLICTS = (pg_errors.UniqueViolation, pg_errors.SerializationFailure, pg_errors.DeadlockDetected,
             pg_errors.LockNotAvailable)


def storage_error(error: Exception) -> StorageError:
    """What the port raises for a psycopg error: WriteConflict where the batch
    may simply be run again, StorageError otherwise."""
    if isinstance(error, CONFLICTS):
        return WriteConflict(f"another server changed what this batch read ({type(error).__name__}: "
                             f"{_first_line(error)})")
    if isinstance(error, PoolTimeout):
        return StorageError(f"the database cannot be reached ({_first_line(error)})")
    return StorageError(f"the database refused: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class _PgErrors:
    """`with pg_errors_as_storage:` turns psycopg's errors into the port's."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        if isinstance(error, (psycopg.Error, PoolTimeout)):
            raise storage_error(error) from error
        return False


pg_errors_as_storage = _PgErrors()


def qmarks(sql: str) -> str:
    """SQLite's `?` parameter marks as psycopg's `%s` (the shared SQL has no
    literal `?` or `%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class QmarkConnection:
    """A psycopg connection with the sqlite3 calls the shared SQL makes
    (execute, executemany; `?` marks), raising the port's errors."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        with pg_errors_as_storage:
            return self.conn.execute(qmarks(sql), tuple(params))

    def executemany(self, sql: str, rows: Any) -> None:
        rows = list(rows)
        if rows:
            with pg_errors_as_storage:
                with self.conn.cursor() as cursor:
                    cursor.executemany(qmarks(sql), rows)

    def close(self) -> None:
        self.conn.close()


class WriterConnection(QmarkConnection):
    """The writer's connection. A batch's BEGIN and its writes, statements
    whose results nothing reads (inserts, updates, a lock taken before a
    read), wait and go in one pipeline with the next statement whose rows
    are read, or with the COMMIT: one round trip where each took one. The
    database runs them in the order they were made, so what a read sees is
    what it saw when each went alone; an error of a write that waited is
    raised by the statement it went with (the batch is rolled back and, on
    a conflict, run again, as before)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self._waiting: list[tuple[str, Any, bool]] = []  # (psycopg's SQL, parameters or rows, rows?)
        self._deferring = False  # inside a batch: begin() to commit() or discard()

    def begin(self) -> None:
        self._waiting, self._deferring = [("BEGIN", (), False)], True

    def defer(self, sql: str, params: Any = ()) -> None:
        """A statement whose result nothing reads, sent with the next one that is read."""
        self._waiting.append((qmarks(sql), tuple(params), False))

    def executemany(self, sql: str, rows: Any) -> None:
        if not self._deferring:
            super().executemany(sql, rows)
            return
        rows = list(rows)
        if rows:
            self._waiting.append((qmarks(sql), rows, True))

    def execute(self, sql: str, params: Any = ()) -> Any:
        if not self._waiting:
            return super().execute(sql, params)
        with pg_errors_as_storage:
            return self._with_waiting(qmarks(sql), tuple(params))

    def commit(self) -> None:
        """The waiting statements and COMMIT, in one round trip."""
        began_only = self._waiting == [("BEGIN", (), False)]
        self._deferring = False
        if began_only:  # nothing was sent: no transaction to end
            self._waiting = []
            return
        with pg_errors_as_storage:
            self._with_waiting("COMMIT", ())

    def discard(self) -> None:
        """Forgets what waits (the batch is rolled back)."""
        self._waiting, self._deferring = [], False

    def _with_waiting(self, sql: str, params: tuple[Any, ...]) -> Any:
        waiting, self._waiting = self._waiting, []
        conn = self.conn
        with conn.pipeline():
            with conn.cursor() as cursor:
                for statement, values, many in waiting:
                    if many:
                        cursor.executemany(statement, values)
                    else:
                        cursor.execute(statement, values)
            last = conn.execute(sql, params)
        return last


class _Rows:
    """A read's rows, fetched whole, with the cursor calls the shared SQL makes."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class PooledReader:
    """Runs each read on a connection of the pool (autocommit: each statement
    sees the latest commits) and hands back its rows."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def execute(self, sql: str, params: Any = ()) -> _Rows:
        with pg_errors_as_storage:
            with self._pool.connection(timeout=READ_WAIT_S) as conn:
                cursor = conn.execute(qmarks(sql), tuple(params))
                return _Rows(cursor.fetchall() if cursor.description else [], cursor.rowcount)


class PostgresInternetState(SqliteInternetState):
    """The "Internet+" state on the batch's transaction. The SQL is the
    SQLite store's, except the host quota, which several servers add to: a
    transaction-scoped advisory lock on (host, year) is taken before it is
    read, so two batches never both add to the same value (a row lock would
    need the row to exist first); and a recorded prescription, whose row is
    locked when it is read."""

    def quota_used(self, host_code: str, year: int) -> int:
        # the lock goes with the read (WriterConnection): one round trip
        self._conn.defer("SELECT pg_advisory_xact_lock(?, hashtext(? || ':' || ?))",
                         (QUOTA_LOCK_CLASS, host_code, str(year)))
        return super().quota_used(host_code, year)

    def _insert(self, into: str, width: int, rows: list[Any]) -> None:
        """One statement per row, sent with the COMMIT (WriterConnection)."""
        self._conn.executemany(f"INSERT INTO {into} VALUES ({marks(width)})", rows)

    def rx_record(self, prescribing_code: str, rx_id: str) -> RxRecord | None:
        """A recorded prescription, its row locked until the batch ends: two
        servers' pharmacy sales of one prescription are checked against what
        it has left one after the other, never both against the same rest."""
        self._conn.defer("SELECT 1 FROM prescriptions WHERE prescribing_code = ? AND rx_id = ? FOR UPDATE",
                         (prescribing_code, rx_id))
        return super().rx_record(prescribing_code, rx_id)


class PostgresLedgerStore(SqliteLedgerStore):
    """The LedgerStore of ledger/storage/port.py on PostgreSQL. One instance
    per process; the writer connection belongs to the writer thread, reads
    use a pool."""

    sole_writer = False

    def __init__(self, url: str, *, read_only: bool = False) -> None:  # noqa: D107 - see the class
        self.url = url
        self.path = pg_connect.describe(url)  # what messages name: never the password
        self.read_only = read_only
        self._chain_id: int | None = None
        self._in_batch = False
        self._blocks = (0, 0)  # the batch's settlement and entry number blocks (chain_head)
        with pg_connect.connect(url, autocommit=True) as conn:
            _check_schema(conn, url, read_only)
        self._writer: WriterConnection | None = None
        options = pg_connect.connect_options(url)
        conninfo = options.pop("conninfo")
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=READ_POOL_SIZE, open=True,
                                    kwargs={**options, "autocommit": True}, check=ConnectionPool.check_connection,
                                    configure=pg_connect.configure, name="medsettle-read")

    # ---- connections -------------------------------------------------
    @property
    def _write(self) -> WriterConnection:  # type: ignore[override]
        """The writer's connection. Between batches one that is missing or
        broken (the database was restarted) is made anew, so the server
        resumes without a restart; inside a batch a lost connection is a
        StorageError (never a silent new connection without the batch)."""
        writer = self._writer
        if writer is not None and not writer.conn.closed and not writer.conn.broken:
            return writer
        if self._in_batch:
            raise StorageError("the connection to the database was lost during the batch")
        if writer is not None:
            writer.conn.close()
            self._writer = None
        try:
            conn = pg_connect.connect(self.url, autocommit=True)
        except pg_connect.DatabaseConnectError as error:
            raise StorageError(str(error)) from None
        with pg_errors_as_storage:
            conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        self._writer = WriterConnection(conn)
        return self._writer

    def unreachable(self) -> str | None:
        try:
            with self._pool.connection(timeout=PROBE_WAIT_S) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout) as error:
            return f"the database cannot be reached ({_first_line(error)})"
        return None

    def reader(self) -> PooledReader:  # type: ignore[override]
        return PooledReader(self._pool)

    def close(self) -> None:
        self._pool.close()
        if self._writer is not None:
            self._writer.conn.close()
            self._writer = None

    def writer_connection(self) -> WriterConnection:  # type: ignore[override]
        return self._write

    def internet_state(self) -> PostgresInternetState:  # type: ignore[override]
        return PostgresInternetState(_WriterOf(self))  # type: ignore[arg-type]

    # ---- reference data ----------------------------------------------
    def save_reference(self, body: str, persons: list[Person], loaded_at: Any) -> None:
        conn = self._write
        conn.execute("BEGIN")
        self._in_batch = True
        try:
            conn.execute("INSERT INTO reference_documents (loaded_at, body) VALUES (?, ?)", (loaded_at.isoformat(), body))
            conn.executemany(
                "INSERT INTO persons (psn_no, name, insutype, insuplc_admdvs, acct_balc_fen) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (psn_no) DO UPDATE SET name = excluded.name, insutype = excluded.insutype, "
                "insuplc_admdvs = excluded.insuplc_admdvs",
                [(p.psn_no, p.name, p.insutype, p.insuplc_admdvs, p.acct_balc_fen) for p in persons],
            )
            conn.execute("COMMIT")
            self._in_batch = False
        except BaseException:
            self.rollback()
            raise

    # ---- writer side: one batch, one transaction ----------------------
    def begin(self) -> None:
        if self._chain_id is None:
            self._chain_id = self._open_chain()
        self._write.begin()  # BEGIN goes with the batch's first statement
        self._in_batch = True

    def _open_chain(self) -> int:
        """This writer's own hash chain, committed before its first batch."""
        label = f"{socket.gethostname()}:{os.getpid()}"
        row = self._write.execute(
            "INSERT INTO chain_heads (label, opened_us, last_hash) VALUES (?, ?, ?) RETURNING chain_id",
            (label, now_us(), GENESIS_HASH)).fetchone()
        return int(row[0])

    def commit(self) -> None:
        """On return the transaction is durable (synchronous_commit as the
        server is configured: on by default). A connection lost during the
        commit leaves its outcome unknown: StorageError, the caller retries
        with the same msgid and the retry finds what was stored, if anything."""
        try:
            self._write.commit()  # with the batch's writes: one round trip
        except StorageError:
            self.rollback()
            raise
        self._in_batch = False

    def rollback(self) -> None:
        """Ends the batch's transaction, keeping the statements prepared on
        this connection (end_keeping_prepared); a connection that cannot
        say which it holds is rolled back by psycopg, which forgets them all."""
        self._in_batch = False
        writer = self._writer
        if writer is None or writer.conn.closed:
            return
        writer.discard()
        if writer.conn.broken:
            writer.conn.close()
            self._writer = None
            return
        if writer.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                if not end_keeping_prepared(writer.conn):
                    writer.conn.rollback()
            except psycopg.Error:
                writer.conn.close()
                self._writer = None

    def chain_head(self) -> tuple[int, int, str]:
        """In a batch: (number before this batch's settlement block, number
        before its entry block, this writer's chain head hash), one round
        trip. Outside one (a reader): (highest settlement number, entries in
        the journal, GENESIS_HASH), what SQLite's last numbers say there."""
        if not self._in_batch:  # a reader (verify's progress): the journal's size, no numbers taken
            row = self.reader().execute(
                "SELECT (SELECT COALESCE(MAX(setl_no), 0) FROM settlements), "
                "(SELECT COUNT(*) FROM journal_entries), ?", (GENESIS_HASH,)).fetchone()
            return int(row[0]), int(row[1]), str(row[2])
        row = self._write.execute(
            # the numbers are taken once the lock is held: the join's row needs the CTE's
            "WITH numbering AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(?, ?)) "
            "SELECT nextval('settlement_numbers'), nextval('entry_numbers'), last_hash "
            "FROM chain_heads, numbering WHERE chain_id = ?", (*NUMBERS_LOCK, self._chain_id)).fetchone()
        setl_block, entry_block, last_hash = row
        self._blocks = (setl_block * NUMBER_BLOCK, entry_block * NUMBER_BLOCK)
        return setl_block * NUMBER_BLOCK, entry_block * NUMBER_BLOCK, last_hash

    def load_persons(self, psn_nos: set[str]) -> dict[str, PersonState]:
        """Locks the persons' rows (sorted, so two batches never wait on each
        other in a cycle) until the batch ends: a person's row is the lock of
        all of that person's state. Their year rows are read by a second
        statement, after the lock: one statement joining them would keep the
        year rows of its snapshot, from before the batch it waited for
        committed (READ COMMITTED re-reads only the locked rows)."""
        found: dict[str, PersonState] = {}
        for chunk in chunks(sorted(psn_nos)):
            where = f"WHERE psn_no IN ({marks(len(chunk))})"
            person_rows = self._write.execute(
                f"SELECT psn_no, insutype, insuplc_admdvs, acct_balc_fen FROM persons {where} "
                "ORDER BY psn_no FOR UPDATE", chunk).fetchall()
            year_rows = self._write.execute(
                f"SELECT psn_no, year, dedc_used_fen, fund_paid_fen FROM person_years {where}", chunk).fetchall()
            years: dict[str, dict[int, tuple[int, int]]] = {}
            for psn_no, year, dedc, fund in year_rows:
                years.setdefault(psn_no, {})[year] = (dedc, fund)
            for psn_no, insutype, insuplc, balance in person_rows:
                found[psn_no] = PersonState(psn_no, insutype, insuplc, balance, years.get(psn_no, {}))
        return found

    def insert_batch(self, batch: BatchWrite) -> None:
        """The batch's rows, sent with its COMMIT (WriterConnection)."""
        assert self._chain_id is not None
        setl_base, entry_base = self._blocks
        if batch.entries:
            last = batch.entries[-1]
            assert entry_base < batch.entries[0][0] and last[0] <= entry_base + NUMBER_BLOCK, "entry numbers outside the block"
        writer = self._write
        if batch.settlements:
            writer.executemany(_INSERT_SETTLEMENT_NUMBERED, [(_setl_no(row[0]), *row) for row in batch.settlements])
        if batch.entries:
            writer.executemany(
                "INSERT INTO journal_entries (entry_no, chain_id, setl_id, kind, setlym, created_us, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(no, self._chain_id, *rest) for no, *rest in batch.entries])
            writer.executemany(
                "INSERT INTO postings (entry_no, setlym, book, account, amount_fen) VALUES (?, ?, ?, ?, ?)",
                batch.postings)
            writer.defer(
                "UPDATE chain_heads SET last_entry_no = ?, last_hash = ?, entries = entries + ? WHERE chain_id = ?",
                (batch.entries[-1][0], batch.entries[-1][-1], len(batch.entries), self._chain_id))
        if batch.persons:
            writer.executemany("UPDATE persons SET acct_balc_fen = ? WHERE psn_no = ?",
                               [(s.acct_balc_fen, s.psn_no) for s in batch.persons.values()])
        if batch.touched_years:
            writer.executemany(
                "INSERT INTO person_years (psn_no, year, dedc_used_fen, fund_paid_fen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (psn_no, year) DO UPDATE SET dedc_used_fen = excluded.dedc_used_fen, "
                "fund_paid_fen = excluded.fund_paid_fen",
                [(psn, year, *batch.persons[psn].years[year]) for psn, year in sorted(batch.touched_years)])

    # ---- reads (any thread): SqliteLedgerStore's SQL, except these ----
    def iter_entry_postings(self, setlym: str | None = None) -> Iterator[JournalRow]:
        """Every journal entry chain by chain, each in order, with its postings
        in insert order (streamed from one connection)."""
        with pg_errors_as_storage, self._pool.connection(timeout=READ_WAIT_S) as conn:
            yield from journal_rows(conn.cursor().stream(*entries_query(setlym)))

    def chain_heads(self) -> dict[int, tuple[int, str]]:
        """Each writer's chain: (its last entry number, its last hash) as its writer recorded them."""
        rows = self.reader().execute("SELECT chain_id, last_entry_no, last_hash FROM chain_heads")
        return {chain: (last_no, last_hash) for chain, last_no, last_hash in rows}

    # ---- verified checkpoints, one list per chain (ledger/chain_checkpoint.py) ----
    def chain_checkpoints(self) -> list[Checkpoint]:
        """Every chain's checkpoints, sorted by (chain, entry_no)."""
        return [Checkpoint(*row) for row in self.reader().execute(
            "SELECT entry_no, entry_hash, setl_no, verified_us, prev_hash, hash, chain_id FROM chain_checkpoints "
            "ORDER BY chain_id, entry_no")]

    def chain_entry_hash(self, chain: int, entry_no: int) -> str | None:
        row = self.reader().execute("SELECT hash FROM journal_entries WHERE entry_no = ? AND chain_id = ?",
                                    (entry_no, chain)).fetchone()
        return row[0] if row else None

    def record_chain_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Appends a checkpoint in the open write transaction."""
        self._write.execute(
            "INSERT INTO chain_checkpoints (chain_id, entry_no, entry_hash, setl_no, verified_us, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (checkpoint.chain, checkpoint.entry_no, checkpoint.entry_hash, checkpoint.setl_no, checkpoint.verified_us,
             checkpoint.prev_hash, checkpoint.hash))


def entries_query(setlym: str | None, *, chain: int | None = None, after_entry_no: int = 0) -> tuple[str, tuple[Any, ...]]:
    """The journal (or one period of it; or one chain's entries after
    after_entry_no) chain by chain, each in order, with postings in insert
    order: (sql, params) for journal_rows."""
    if chain is not None:  # one chain's, read off journal_entries_by_chain
        where, params = "WHERE e.chain_id = %s AND e.entry_no > %s ", (chain, after_entry_no)
    elif setlym is not None:
        where, params = "WHERE e.setlym = %s ", (setlym,)
    else:
        where, params = "", ()
    return (
        "SELECT e.entry_no, e.setl_id, e.kind, e.setlym, e.created_us, e.prev_hash, e.hash, "
        "s.insuplc_admdvs, s.mdtrtarea_admvs, s.payee_code, s.hifp_pay_fen, s.acct_pay_fen, "
        "e.chain_id, p.book, p.account, p.amount_fen "
        "FROM journal_entries e "
        "LEFT JOIN settlements s ON s.setl_id = e.setl_id AND e.kind IN ('settle', 'reverse') "
        "LEFT JOIN postings p ON p.entry_no = e.entry_no "
        f"{where}ORDER BY e.chain_id, e.entry_no, p.posting_no", params)


def journal_rows(rows: Iterator[Any]) -> Iterator[JournalRow]:
    """entries_query's rows grouped into one JournalRow per entry."""
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        first = next(group)
        postings = [(book, account, amount) for *_, book, account, amount in itertools.chain([first], group)
                    if book is not None]
        settlement = None if first[7] is None else tuple(first[7:12])
        yield JournalRow(*first[:7], settlement, postings, chain=first[12])  # type: ignore[arg-type]


def end_keeping_prepared(conn: psycopg.Connection[Any]) -> bool:
    """Rolls back the open transaction in one round trip and keeps what is
    prepared; False (nothing sent) where psycopg keeps its prepared
    statements otherwise than this knows.

    psycopg's rollback() forgets every prepared statement and deallocates
    them (they are parsed and planned again, unprepared, until each has run
    5 times more: about 60 parses after each write conflict, measured).
    PostgreSQL keeps them across a rollback: they belong to the session,
    and a batch changes no table's definition. What psycopg believes
    prepared may be more than PostgreSQL holds: a statement whose
    preparation was queued in a pipeline behind one that failed (a key
    another server took) was skipped by PostgreSQL, yet psycopg counts it
    as prepared, and running it fails ("prepared statement _pg3_N does not
    exist"). So the rollback reads the names PostgreSQL holds, and psycopg
    forgets every other."""
    names = getattr(getattr(conn, "_prepared", None), "_names", None)
    if not isinstance(names, dict) or getattr(conn, "_pipeline", True) is not None:
        return False
    result = conn.pgconn.exec_(b"ROLLBACK; SELECT name FROM pg_prepared_statements")
    if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
        raise psycopg.OperationalError(f"ROLLBACK failed: {result.error_message.decode(errors='replace')}")
    held = {result.get_value(row, 0) for row in range(result.ntuples)}
    for key, name in list(names.items()):
        if name not in held:
            del names[key]
    return True


class _WriterOf:
    """The store's current writer connection, looked up at each call (it is
    remade after the database comes back)."""

    def __init__(self, store: PostgresLedgerStore) -> None:
        self._store = store

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._store._write.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        self._store._write.executemany(sql, rows)

    def defer(self, sql: str, params: Any = ()) -> None:
        self._store._write.defer(sql, params)


def _setl_no(setl_id: str) -> int:
    """The number in a setl_id the processor made (S + digits)."""
    return int(setl_id[1:])


def _insert_settlement_numbered() -> str:
    from medsettle.ledger.storage.rows import SETTLEMENT_COLUMNS

    columns = ("setl_no", *SETTLEMENT_COLUMNS)
    return f"INSERT INTO settlements ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_INSERT_SETTLEMENT_NUMBERED = _insert_settlement_numbered()


def connect_qmark(url: str, *, read_only: bool = False) -> QmarkConnection:
    """A connection (autocommit) for short-lived stores such as the
    credentials and the read commands, after the schema-version check a
    ledger open makes. read_only: the session cannot write, and a
    transaction it opens reads one snapshot (REPEATABLE READ), as SQLite's
    read transaction does."""
    conn = pg_connect.connect(url, autocommit=True)
    try:
        _check_schema(conn, url, read_only)
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SET default_transaction_isolation = 'repeatable read'")
    except BaseException:
        conn.close()
        raise
    return QmarkConnection(conn)


def _check_schema(conn: psycopg.Connection[Any], url: str, read_only: bool) -> None:
    label = pg_connect.describe(url)
    if read_only:
        try:
            on_postgres.check_readable(conn, label)
        except on_postgres.EmptyDatabase as error:
            raise NotALedgerError(str(error)) from None
    else:
        on_postgres.open_writable(conn, label)


def open_postgres_ledger(url: str, *, read_only: bool = False) -> PostgresLedgerStore:
    return PostgresLedgerStore(url, read_only=read_only)


def _clearing_reads() -> type:
    from medsettle.ledger.clearing.store import ClearingStore

    class PostgresClearingReads(PostgresLedgerStore, ClearingStore):  # type: ignore[misc]
        """ClearingStore's reads (their SQL is portable) on a PostgreSQL
        ledger, for `medsettle balances`; writing a clearing is not here."""

    return PostgresClearingReads


PostgresClearingReads = _clearing_reads()

"""The ledger on one SQLite file: WAL, synchronous=FULL (the writer process:
NORMAL, with its own fsync before it answers), one writer.

The writer connection belongs to the group-commit writer thread; reads use
their own connections (WAL lets them run beside the writer). This process is
the file's only writer of settlements (`sole_writer`): the clearing run may
append its own entries between batches, under SQLite's write lock.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

from medsettle.ledger.chain_checkpoint import Checkpoint
from medsettle.ledger.posting.journal import GENESIS_HASH
from medsettle.ledger.storage.migrations import on_sqlite
from medsettle.ledger.reference.models import Person
from medsettle.ledger.settlement.model import Settlement, SettlementKind
from medsettle.ledger.storage import wal_figures
from medsettle.ledger.storage.fence import refuse_if_fenced
from medsettle.ledger.storage.wal_figures import WalState
from medsettle.ledger.storage.port import (  # noqa: F401  (re-exported: older imports keep working)
    BatchWrite,
    NotALedgerError,
    PersonState,
    StorageError,
    WriteConflict,
)
from medsettle.ledger.storage.rows import (  # noqa: F401
    SETTLEMENT_COLUMNS,
    JournalRow,
    from_us,
    line_splits_json,
    settlement_from_row,
    settlement_row,
    to_us,
)

if TYPE_CHECKING:
    from medsettle.ledger.storage.internet_state import SqliteInternetState

BUSY_TIMEOUT_MS = 5_000
_SELECT_SETTLEMENT = f"SELECT {', '.join(SETTLEMENT_COLUMNS)} FROM settlements"
# The inserts of insert_batch, for insert_rows. OR ROLLBACK: a row the
# table refuses (a stored idempotency key) rolls the whole transaction back,
# as the processor does after any failed write, so SQLite keeps no
# statement journal to undo one statement: a statement of many rows
# otherwise copies every page it changes there first, and past 64 KiB (a
# batch's settlements over a few thousand idempotency keys) into a
# temporary file, written and unlinked each batch.
INSERT_ALL_OR_NOTHING = "INSERT OR ROLLBACK INTO"
_INTO_SETTLEMENTS = f"{INSERT_ALL_OR_NOTHING} settlements ({', '.join(SETTLEMENT_COLUMNS)})"
_INTO_ENTRIES = f"{INSERT_ALL_OR_NOTHING} journal_entries (entry_no, setl_id, kind, setlym, created_us, prev_hash, hash)"
_INTO_POSTINGS = f"{INSERT_ALL_OR_NOTHING} postings (entry_no, setlym, book, account, amount_fen)"
# A balance the batch left as it was (a person without a personal account
# keeps 0) matches no row: no record is built and no page compared. Most
# such statements are not run at all (SqliteLedgerStore._changed_balances).
_UPDATE_BALANCE = "UPDATE persons SET acct_balc_fen = ?1 WHERE psn_no = ?2 AND acct_balc_fen <> ?1"
_INTO_YEARS = "INSERT INTO person_years (psn_no, year, dedc_used_fen, fund_paid_fen)"
_YEARS_CONFLICT = (
    "ON CONFLICT (psn_no, year) DO UPDATE SET dedc_used_fen = excluded.dedc_used_fen, "
    "fund_paid_fen = excluded.fund_paid_fen"
)
# SQLite's message when the UNIQUE (fixmedins_code, msgid) index refuses a settlement
_KEY_TAKEN = "settlements.fixmedins_code, settlements.msgid"
# Keys per batched lookup: two IN lists of a chunk (find_by_keys) stay
# within MAX_PARAMETERS.
LOOKUP_CHUNK = 256
# An IN list of more keys than this is padded to a power of two (chunks): a
# statement of another length is parsed and planned again (about 0.9M
# instructions for 300 keys), a repeated key costs one more bound value.
EXACT_KEYS_UP_TO = 16


# Rows per INSERT statement: many rows in one statement cost about a quarter
# fewer instructions each than executemany's step per row, but each statement
# run costs several rows' worth, most felt in the small batches of unary load:
# MIN_ROWS_PER_INSERT to EXACT_ROWS_UP_TO rows go in one statement of exactly
# that many rows, more in statements of power-of-two sizes, a single row
# through executemany. Two rows already go in one statement: with INSERT OR
# ROLLBACK no statement of many rows keeps a statement journal (batches of 3
# settlements: 459.5k -> 424.5k instructions each with 2 instead of 4). Each
# table takes at most about twenty slots of the statement cache
# (STATEMENT_CACHE). The bound keeps a statement within 999 parameters, the
# least any SQLite allows.
MAX_ROWS_PER_INSERT = 64
MIN_ROWS_PER_INSERT = 2
EXACT_ROWS_UP_TO = 16
MAX_PARAMETERS = 999
# Prepared statements kept per connection (sqlite3's default is 128): every
# size of insert_rows of every table the writer fills, its other statements
# and the reads, with room to spare; a statement pushed out is parsed again.
STATEMENT_CACHE = 512
# Persons whose stored balance the writer's connection knows (it loaded or
# wrote it since another connection last committed): a batch's person whose
# balance is still that one gets no UPDATE, which costs about 14k
# instructions even when it changes nothing (most settlements pay nothing
# from the personal account). Past the bound (about 100 bytes each) all are
# forgotten at once: taking the oldest out one by one (del d[next(iter(d))])
# makes each removal scan the dict's deleted entries, up to 130 us a person
# once the bound is reached. A person not known is updated as before.
KNOWN_BALANCES = 200_000


def insert_rows(conn: sqlite3.Connection | sqlite3.Cursor, insert_into: str, width: int, rows: list[tuple[Any, ...]],
                on_conflict: str = "") -> None:
    """INSERT INTO `insert_into` (its column list) VALUES each row (of
    `width` values) in few statements: full statements of the largest
    power-of-two size, one of each smaller power of two the rest needs while
    more than EXACT_ROWS_UP_TO rows are left, then one statement of exactly
    the rows left, or one executemany if fewer than MIN_ROWS_PER_INSERT.
    on_conflict: an upsert clause every statement ends with."""
    size = MAX_ROWS_PER_INSERT
    while size * width > MAX_PARAMETERS:
        size //= 2
    start, count = 0, len(rows)
    while count - start >= MIN_ROWS_PER_INSERT:
        left = count - start
        if left <= EXACT_ROWS_UP_TO and left <= size:
            take = left
        else:
            while size > left:
                size //= 2
            take = size
        conn.execute(_values_sql(insert_into, width, take, on_conflict),
                     tuple(itertools.chain.from_iterable(rows[start:start + take])))
        start += take
    if start < count:
        conn.executemany(_values_sql(insert_into, width, 1, on_conflict), rows[start:])


_VALUES_SQL: dict[tuple[str, int, int, str], str] = {}


def _values_sql(insert_into: str, width: int, rows: int, on_conflict: str) -> str:
    sql = _VALUES_SQL.get((insert_into, width, rows, on_conflict))
    if sql is None:
        row = f"({marks(width)})"
        sql = f"{insert_into} VALUES {', '.join([row] * rows)}"
        if on_conflict:
            sql += f" {on_conflict}"
        _VALUES_SQL[(insert_into, width, rows, on_conflict)] = sql
    return sql


def marks(n: int) -> str:
    """n parameter marks for an IN (...) list."""
    return ", ".join("?" * n)


def chunks(items: list[Any], size: int = LOOKUP_CHUNK) -> Iterator[list[Any]]:
    """The items in lists of at most `size`, for IN (...) lists: each list
    longer than EXACT_KEYS_UP_TO is padded to a power of two (at most
    `size`) by repeating its last item, which an IN list ignores, so the
    statements of all lengths fit in the statement cache."""
    for start in range(0, len(items), size):
        yield padded(items[start:start + size], size)


def padded(keys: list[Any], most: int = LOOKUP_CHUNK) -> list[Any]:
    """keys, their last one repeated up to the next power of two (not past
    `most`) if there are more than EXACT_KEYS_UP_TO."""
    count = len(keys)
    if count <= EXACT_KEYS_UP_TO:
        return keys
    length = min(1 << (count - 1).bit_length(), max(most, count))
    return keys + [keys[-1]] * (length - count)


class _StorageErrors:
    """`with storage_errors:` turns SQLite's refusal of a statement into
    StorageError, which the writer answers as STORAGE_UNAVAILABLE. A plain
    class, not contextlib: it wraps statements on the settlement path."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        if isinstance(error, sqlite3.Error):
            raise StorageError(str(error)) from error
        return False


storage_errors = _StorageErrors()


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                           cached_statements=STATEMENT_CACHE)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk (WAL fsynced) before it returns.
    conn.execute("PRAGMA synchronous = FULL")
    return conn


# The WAL's checkpoints run on their own connection in a thread of the
# writer's process (WalCheckpointer), not inside one of the writer's
# commits: SQLite's autocheckpoint would copy up to a thousand pages into
# the database file and sync it within the commit of whichever batch filled
# the WAL, which then answers late. Python's sqlite3 lets go of the GIL
# while SQLite works, so the writer runs on meanwhile.
# How often the checkpointer looks for new commits: the WAL holds about this
# long's writes (under unary load a little more than the thousand pages of
# SQLite's autocheckpoint).
CHECKPOINT_INTERVAL_S = 0.1
# A PASSIVE checkpoint waits for nobody, and the WAL is written again from
# its start only by a transaction that begins when every frame is copied,
# which a writer that never pauses rarely meets. So once a PASSIVE
# checkpoint has copied a WAL of more than WAL_BOUND_FRAMES (16 MiB in 4 KiB
# pages), the writer's next commit is followed by a RESTART checkpoint on
# the writer's own connection: it copies what came since (a commit or two),
# waits up to RESTART_WAIT_MS for readers of older frames, and the next
# commit writes the WAL from its start, cut back to the bound
# (journal_size_limit). A RESTART from the checkpointer's connection would
# wait for the write lock, which a busy writer takes again before SQLite's
# busy handler looks. A reader that holds an old snapshot (a long verify)
# stops the PASSIVE checkpoints short, and the WAL grows until it ends, as
# with SQLite's autocheckpoint.
WAL_BOUND_FRAMES = 4_096
RESTART_WAIT_MS = 100


class WalCheckpointer:
    """A daemon thread that checkpoints a SQLite file's WAL (see above)
    while the file's writer connection has its autocheckpoint turned off.
    The thread holds no reference to the store: a store that is dropped
    without close() stops it too (weakref.finalize).

    A round that fails, whatever it raises (no connection, the disk full, a
    defect), is counted, its cause kept in last_error, its connection
    closed, and the next round tries again after a wait that doubles up to
    MAX_BACKOFF_S: the thread never ends before stop(), since without it
    the WAL would grow without bound. After each round it publishes its
    figures (ledger/storage/wal_figures.py) if the writer named where."""

    MAX_BACKOFF_S = 2.0  # the longest wait between failed rounds
    # The WAL is held back (a reader keeps frames from being copied) when it
    # holds more than this many times its bound with frames not copied.
    HELD_BACK_FACTOR = 4

    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S,
                 bound_frames: int = WAL_BOUND_FRAMES) -> None:
        self.path = path
        self.interval_s = interval_s
        self.bound_frames = bound_frames
        self.commits = 0  # counted by the writer; read here without a lock (an int's store is atomic)
        self.checkpoints = 0  # PASSIVE checkpoints run to their end (copying all or stopped short)
        self.failures = 0  # rounds that failed
        # set here when the WAL is past its bound and all copied; the writer
        # then runs a RESTART checkpoint after its commit (restart_wal)
        self.restart_wanted = False
        self.restarts = 0  # RESTART checkpoints that had the WAL written again from its start
        self.restart_failures = 0  # RESTART checkpoints that failed (counted on the writer's thread)
        self.last_error: str | None = None  # the failure of the last round (or RESTART); None once one succeeds
        self.last_failure = ""  # the cause of the latest failure, kept after recovery (for the logs)
        self.wal_frames = 0  # frames in the WAL at the last checkpoint
        self.uncopied_frames = 0  # of those, not copied into the database file
        self.copied_at_s = time.time()  # when the WAL was last seen wholly copied
        self.failing_since_s = 0.0  # when the failed rounds in a row began; 0: the last round did not fail
        self.held_back_since_s = 0.0  # since when the WAL is held back (HELD_BACK_FACTOR); 0: it is not
        self._conn: sqlite3.Connection | None = None
        self._seen = 0  # the commits the last checkpoint saw
        self._short = False  # the last checkpoint stopped short of the WAL's end (a reader held it back) or failed
        self._figures = wal_figures.take(path)
        self._base = self._figures.read() if self._figures is not None else WalState()  # a dead writer's counts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread after the checkpoint it may be running."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        delay_s = self.interval_s
        try:
            self._publish()
            while not self._stop.wait(delay_s):
                try:
                    self._round()
                except Exception as error:  # any kind: see the class's doc
                    self._failed(error)
                    delay_s = min(2 * delay_s, max(self.interval_s, self.MAX_BACKOFF_S))
                else:
                    self.failing_since_s, self.last_error = 0.0, None
                    delay_s = self.interval_s
                self._publish()
        finally:
            self._disconnect()
            if self._figures is not None:
                wal_figures.give_back(self.path, self._figures)

    def _round(self) -> None:
        if self._conn is None:  # at first, or again after a failed round
            # connect(): the same synchronous=FULL, so a checkpoint syncs the
            # WAL before it copies and the database file after.
            self._conn = connect(self.path)
        commits = self.commits
        if commits == self._seen and not self._short:  # nothing committed since a checkpoint copied all
            self.copied_at_s = time.time()
            return
        # none while the writer's RESTART is due: it would wait for this one's lock;
        # one stopped short (or failed) is tried again without new commits, so the
        # WAL is copied once its reader is gone, not at the next commit
        if not self.restart_wanted:
            self._seen = commits
            self._short = not self.checkpoint(self._conn)  # if it raises, _failed marks the round short

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        self.last_error = self.last_failure = (
            str(error) if isinstance(error, sqlite3.Error) else f"{type(error).__name__}: {error}")
        if not self.failing_since_s:
            self.failing_since_s = time.time()
        self._short = True  # tried again at the next round, new commits or not
        self._disconnect()  # its state after an unexpected error is unknown: the next round opens another

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001  a broken connection's close: nothing left to do with it
                pass

    def checkpoint(self, conn: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint; whether it copied the whole WAL. An error
        (the disk full, say) is raised: the round fails and is tried again
        (a checkpoint loses nothing committed, the WAL only stays longer)."""
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy:  # the writer's RESTART checkpoint ran meanwhile (frames -1): tried again next round
            return False
        self.checkpoints += 1
        now = time.time()
        complete = copied == frames
        self.wal_frames, self.uncopied_frames = frames, frames - copied
        if complete:
            self.copied_at_s = now
        held_back = not complete and frames > self.HELD_BACK_FACTOR * self.bound_frames
        self.held_back_since_s = (self.held_back_since_s or now) if held_back else 0.0
        if frames > self.bound_frames and complete:
            self.restart_wanted = True
        return complete

    def restart_wal(self, writer: sqlite3.Connection) -> None:
        """The RESTART checkpoint on the writer's connection, after a commit
        (never inside one: the commit is durable and answered as it was)."""
        self.restart_wanted = False
        try:
            writer.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
            try:
                busy, _, _ = writer.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as error:
            self.restart_failures += 1
            self.last_error = self.last_failure = f"RESTART checkpoint: {error}"
            return
        if not busy:
            self.restarts += 1

    def state(self) -> WalState:
        """The figures as of now, added to a dead writer's (what _publish writes)."""
        base = self._base
        return WalState(
            checkpoints=base.checkpoints + self.checkpoints,
            failures=base.failures + self.failures + self.restart_failures,
            restarts=base.restarts + self.restarts,
            wal_frames=self.wal_frames, uncopied_frames=self.uncopied_frames, bound_frames=self.bound_frames,
            started=True, copied_at_s=self.copied_at_s, failing_since_s=self.failing_since_s,
            held_back_since_s=self.held_back_since_s, last_failure=self.last_failure)

    def _publish(self) -> None:
        if self._figures is not None:
            self._figures.publish(self.state())


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A connection that cannot change the file (SQLite's mode=ro): no
    journal_mode or synchronous set, no schema created. A WAL database stays
    readable while a server writes to it. Refuses, with NotALedgerError, a
    missing file and one without the journal (an empty file, another
    application's database); a file that is no SQLite database at all is
    SQLite's own DatabaseError."""
    file = Path(path)
    if not file.is_file():
        raise NotALedgerError(f"no database at {path}")
    uri = f"file:{quote(str(file.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal_entries'").fetchone()
    except BaseException:
        conn.close()
        raise
    if found is None:
        conn.close()
        raise NotALedgerError(f"{path} is not a medsettle database (no journal_entries table)")
    try:
        on_sqlite.check_readable(conn, str(path))
    except BaseException:
        conn.close()
        raise
    return conn


def init_schema(conn: sqlite3.Connection, label: str = "the database") -> None:
    """Creates the schema in an empty file; refuses (SchemaVersionError) a
    schema of another version (migrations/__init__.py has the rules)."""
    on_sqlite.open_writable(conn, label)


FLAG_COLUMNS = ("flag_no", "setl_id", "rule", "field", "detail", "fixmedins_code", "flag_day")


def flags_of_day(conn: sqlite3.Connection, day: str, fixmedins_code: str = "",
                 after_flag_no: int = 0, limit: int = -1) -> Iterator[dict[str, Any]]:
    """The day's fund-supervision flags in the order raised (flag_no), after
    after_flag_no; limit -1: all."""
    sql = f"SELECT {', '.join(FLAG_COLUMNS)} FROM audit_flags WHERE flag_day = ? AND flag_no > ?"
    params: list[Any] = [day, after_flag_no]
    if fixmedins_code:
        sql += " AND fixmedins_code = ?"
        params.append(fixmedins_code)
    sql += " ORDER BY flag_no" if limit < 0 else f" ORDER BY flag_no LIMIT {int(limit)}"
    for row in conn.execute(sql, params):
        yield dict(zip(FLAG_COLUMNS, row))


class SqliteLedgerStore:
    """All SQL of the ledger (the LedgerStore of ledger/storage/port.py on
    SQLite). One instance per process and database file."""

    sole_writer = True  # one writer process per file: see the module doc

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """read_only: every connection is connect_read_only's (the file is
        never changed, nothing can be written; NotALedgerError if it holds
        no ledger); otherwise the schema is created if missing."""
        self.path = str(path)
        self.read_only = read_only
        if not read_only:  # before its first connection: the last to close would checkpoint the WAL
            refuse_if_fenced(self.path)
        self._connect = connect_read_only if read_only else connect
        self._write = self._connect(self.path)
        self._checkpointer: WalCheckpointer | None = None
        if not read_only:
            init_schema(self._write, self.path)
        # The writer's statements of every batch run on one cursor: each
        # Connection.execute builds and frees a cursor (about 1.3k instructions).
        self._writes = self._write.cursor()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []  # every thread's, for close()
        self._readers_lock = threading.Lock()
        # The chain head as of this connection's own writes, and the file's
        # data_version when it was read: another connection's commit (the
        # clearing run appending an entry) changes the version, so the head
        # is read again; a rollback forgets it.
        self._head: tuple[int, int, str] | None = None
        self._head_version = -1
        # psn_no -> balance as stored (KNOWN_BALANCES); emptied when another
        # connection commits (data_version) and on rollback
        self._balances: dict[str, int] = {}

    # ---- connections -------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """A read connection for the calling thread."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(self.path)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        """Closes the writer's connection and every thread's read connection
        (the last connection to close checkpoints what the WAL still holds)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._write.close()

    # ---- reference data ----------------------------------------------
    def reference_body(self) -> str | None:
        row = self._write.execute(
            "SELECT body FROM reference_documents ORDER BY doc_no DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def save_reference(self, body: str, persons: list[Person], loaded_at: dt.datetime) -> None:
        """Stores a reference document and adds its persons (existing ones keep their balance)."""
        conn = self._write
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO reference_documents (loaded_at, body) VALUES (?, ?)",
                (loaded_at.isoformat(), body),
            )
            conn.executemany(
                "INSERT INTO persons (psn_no, name, insutype, insuplc_admdvs, acct_balc_fen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (psn_no) DO UPDATE SET "
                "name = excluded.name, insutype = excluded.insutype, "
                "insuplc_admdvs = excluded.insuplc_admdvs",
                [(p.psn_no, p.name, p.insutype, p.insuplc_admdvs, p.acct_balc_fen) for p in persons],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---- writer side (writer thread only) ----------------------------
    def writer_connection(self) -> sqlite3.Connection:
        """The writer's connection, for state written in the same transaction
        as the settlements (storage/internet_state.py)."""
        return self._write

    def internet_state(self) -> SqliteInternetState:
        """The "Internet+" state on the writer's connection (same transaction)."""
        from medsettle.ledger.storage.internet_state import SqliteInternetState

        return SqliteInternetState(self._write)

    def chain_head(self) -> tuple[int, int, str]:
        """(last setl_no, last entry_no, last entry hash), this transaction's
        own inserts included. Read from the file only when another connection
        committed since it was last read (PRAGMA data_version)."""
        conn = self._write
        with storage_errors:
            version = self._writes.execute("PRAGMA data_version").fetchone()[0]
            if self._head is not None and version == self._head_version:
                return self._head
            if version != self._head_version:  # another connection committed: what it wrote is not known
                self._balances.clear()
            setl_no = conn.execute("SELECT COALESCE(MAX(setl_no), 0) FROM settlements").fetchone()[0]
            row = conn.execute(
                "SELECT entry_no, hash FROM journal_entries ORDER BY entry_no DESC LIMIT 1"
            ).fetchone()
        self._head = (setl_no, 0, GENESIS_HASH) if row is None else (setl_no, row[0], row[1])
        self._head_version = version
        return self._head

    def find_by_key(self, fixmedins_code: str, msgid: str) -> tuple[Settlement, str, str] | None:
        with storage_errors:
            row = self._write.execute(
                f"{_SELECT_SETTLEMENT} WHERE fixmedins_code = ? AND msgid = ?", (fixmedins_code, msgid)
            ).fetchone()
        return settlement_from_row(row) if row else None

    def find_by_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[Settlement, str]]:
        """The stored (settlement, fingerprint) of each (fixmedins_code, msgid)
        that exists: one query per chunk instead of one per command (the
        writer checks a whole batch's idempotency keys at once)."""
        found: dict[tuple[str, str], tuple[Settlement, str]] = {}
        for chunk in chunks(sorted(keys)):
            codes = padded(sorted({code for code, _ in chunk}))
            msgids = padded(sorted({msgid for _, msgid in chunk}))
            # Both columns IN (...): the UNIQUE (fixmedins_code, msgid) index is used for every pair.
            with storage_errors:
                rows = self._write.execute(
                    f"{_SELECT_SETTLEMENT} WHERE fixmedins_code IN ({marks(len(codes))}) AND msgid IN ({marks(len(msgids))})",
                    (*codes, *msgids),
                ).fetchall()
            for row in rows:
                settlement, fingerprint, _ = settlement_from_row(row)
                key = (settlement.fixmedins_code, settlement.msgid)
                if key in keys:
                    found[key] = (settlement, fingerprint)
        return found

    def find_by_setl_id(self, setl_id: str) -> tuple[Settlement, str, str] | None:
        row = self._write.execute(f"{_SELECT_SETTLEMENT} WHERE setl_id = ?", (setl_id,)).fetchone()
        return settlement_from_row(row) if row else None

    def reversal_of(self, setl_id: str) -> str | None:
        row = self._write.execute(
            "SELECT setl_id FROM settlements WHERE orig_setl_id = ? AND kind = ?",
            (setl_id, int(SettlementKind.REVERSAL)),
        ).fetchone()
        return row[0] if row else None

    def load_person(self, psn_no: str) -> PersonState | None:
        return self.load_persons({psn_no}).get(psn_no)

    def load_persons(self, psn_nos: set[str]) -> dict[str, PersonState]:
        """The stored state of each person that exists, one query per chunk:
        each person's row joined with their year rows (one row per year, or
        one with no year), the IN list bound once. (PostgresLedgerStore
        locks the persons' rows first and reads their years after.)"""
        found: dict[str, PersonState] = {}
        balances = self._balances
        for chunk in chunks(sorted(psn_nos)):
            with storage_errors:
                rows = self._write.execute(
                    "SELECT p.psn_no, p.insutype, p.insuplc_admdvs, p.acct_balc_fen, y.year, y.dedc_used_fen, "
                    "y.fund_paid_fen FROM persons p LEFT JOIN person_years y ON y.psn_no = p.psn_no "
                    f"WHERE p.psn_no IN ({marks(len(chunk))})", chunk).fetchall()
            for psn_no, insutype, insuplc, balance, year, dedc, fund in rows:
                person = found.get(psn_no)
                if person is None:
                    person = found[psn_no] = PersonState(psn_no, insutype, insuplc, balance, {})
                    balances[psn_no] = balance
                if year is not None:
                    person.years[year] = (dedc, fund)
        return found

    def begin(self) -> None:
        """Takes the write lock: no other process appends until commit or rollback."""
        if self._checkpointer is None:
            self._start_checkpointer()
        with storage_errors:
            self._writes.execute("BEGIN IMMEDIATE")

    def _start_checkpointer(self) -> None:
        """At the first batch: the WAL is checkpointed by a WalCheckpointer
        from now on, no longer inside the writer's commits."""
        with storage_errors:
            self._write.execute("PRAGMA wal_autocheckpoint = 0")
            page_bytes = self._write.execute("PRAGMA page_size").fetchone()[0]
            self._write.execute(f"PRAGMA journal_size_limit = {WAL_BOUND_FRAMES * (page_bytes + 24)}")
        checkpointer = self._checkpointer = WalCheckpointer(self.path, CHECKPOINT_INTERVAL_S, WAL_BOUND_FRAMES)
        weakref.finalize(self, checkpointer.stop)

    @property
    def wal_checkpointer(self) -> WalCheckpointer | None:
        """The thread that checkpoints the WAL, once the first batch has begun."""
        return self._checkpointer

    def commit(self) -> None:
        """On return the transaction is durable (WAL, synchronous=FULL), except
        in the writer process, which sets its connection to synchronous=NORMAL
        and answers a batch only after its own fsync of the WAL
        (ledger/storage/wal_sync.py)."""
        try:
            self._writes.execute("COMMIT")
        except sqlite3.Error as error:
            self.rollback()
            raise StorageError(str(error)) from error
        checkpointer = self._checkpointer
        if checkpointer is not None:  # None only if the transaction was begun on the connection itself
            checkpointer.commits += 1
            if checkpointer.restart_wanted:
                checkpointer.restart_wal(self._write)

    def rollback(self) -> None:
        self._head = None  # it may count rows that are gone now
        self._balances.clear()  # it may hold balances that are gone now
        if self._write.in_transaction:
            try:
                self._write.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection already rolled back (e.g. SQLITE_FULL)

    def insert_batch(self, batch: BatchWrite) -> None:
        """Inserts one group commit's rows inside the open transaction."""
        cursor = self._writes
        head = self._head
        self._head = None  # unknown if an insert fails half way
        with storage_errors:
            # an empty executemany still costs a statement reset: skipped
            try:
                insert_rows(cursor, _INTO_SETTLEMENTS, len(SETTLEMENT_COLUMNS), batch.settlements)
            except sqlite3.IntegrityError as error:
                if _KEY_TAKEN in str(error):  # a key the batch took for new is stored
                    raise WriteConflict(f"an idempotency key of the batch is stored ({error})") from error
                raise
            insert_rows(cursor, _INTO_ENTRIES, 7, batch.entries)
            insert_rows(cursor, _INTO_POSTINGS, 5, batch.postings)
            if batch.persons:
                changed = self._changed_balances(batch.persons)
                if changed:
                    cursor.executemany(_UPDATE_BALANCE, changed)
            if batch.touched_years:
                insert_rows(cursor, _INTO_YEARS, 4,
                            [(psn, year, *batch.persons[psn].years[year]) for psn, year in sorted(batch.touched_years)],
                            _YEARS_CONFLICT)
        if head is not None:
            # settlements take the next setl_no (INTEGER PRIMARY KEY) in insert order
            setl_no, entry_no, last_hash = head
            if batch.entries:
                entry_no, last_hash = batch.entries[-1][0], batch.entries[-1][6]
            self._head = (setl_no + len(batch.settlements), entry_no, last_hash)

    def _changed_balances(self, persons: dict[str, PersonState]) -> list[tuple[int, str]]:
        """(balance, psn_no) of each person whose balance is not known to be
        the stored one; they are known from here on (a failed write rolls
        back, which forgets them all)."""
        known = self._balances
        changed = []
        for psn_no, person in persons.items():
            balance = person.acct_balc_fen
            if known.get(psn_no) != balance:
                changed.append((balance, psn_no))
                known[psn_no] = balance
        if len(known) > KNOWN_BALANCES:
            known.clear()
        return changed

    # ---- reads (any thread) ------------------------------------------
    def get_settlement(self, fixmedins_code: str, setl_id: str = "", msgid: str = "") -> Settlement | None:
        conn = self.reader()
        if setl_id:
            row = conn.execute(
                f"{_SELECT_SETTLEMENT} WHERE setl_id = ? AND fixmedins_code = ?", (setl_id, fixmedins_code)
            ).fetchone()
        else:
            row = conn.execute(
                f"{_SELECT_SETTLEMENT} WHERE fixmedins_code = ? AND msgid = ?", (fixmedins_code, msgid)
            ).fetchone()
        return settlement_from_row(row)[0] if row else None

    def list_settlements_page(
        self, fixmedins_code: str, setlym: str, clr_type: int, after_setl_no: int, page_size: int
    ) -> list[tuple[int, Settlement]]:
        """One page of a period's records, in setl_no order, after after_setl_no."""
        clauses = ["setlym = ?", "setl_no > ?"]
        params: list[Any] = [setlym, after_setl_no]
        if fixmedins_code:
            clauses.append("fixmedins_code = ?")
            params.append(fixmedins_code)
        if clr_type:
            clauses.append("clr_type = ?")
            params.append(clr_type)
        params.append(page_size)
        rows = self.reader().execute(
            f"SELECT setl_no, {', '.join(SETTLEMENT_COLUMNS)} FROM settlements "
            f"WHERE {' AND '.join(clauses)} ORDER BY setl_no LIMIT ?",
            params,
        ).fetchall()
        return [(row[0], settlement_from_row(row[1:])[0]) for row in rows]

    def period_totals(self, fixmedins_code: str, setlym: str, clr_type: int) -> tuple[int, int, int, int, int]:
        """(count, medfee_sumamt, fund_pay_sumamt, acct_pay, psn_cash_pay) of a period."""
        row = self.reader().execute(
            "SELECT COUNT(*), COALESCE(SUM(medfee_sumamt_fen), 0), COALESCE(SUM(fund_pay_sumamt_fen), 0), "
            "COALESCE(SUM(acct_pay_fen), 0), COALESCE(SUM(psn_cash_pay_fen), 0) FROM settlements "
            "WHERE fixmedins_code = ? AND setlym = ? AND clr_type = ?",
            (fixmedins_code, setlym, clr_type),
        ).fetchone()
        return tuple(row)  # type: ignore[return-value]

    def book_balances(self, setlym: str | None = None) -> dict[tuple[str, str], int]:
        """Balance of every (book, account), for one period or for all time."""
        sql = "SELECT book, account, SUM(amount_fen) FROM postings"
        params: tuple[Any, ...] = ()
        if setlym is not None:
            sql += " WHERE setlym = ?"
            params = (setlym,)
        sql += " GROUP BY book, account"
        return {(book, account): total for book, account, total in self.reader().execute(sql, params)}

    def iter_entry_postings(self, setlym: str | None = None, after_entry_no: int = 0) -> Iterator[JournalRow]:
        """Every journal entry in order (or only those of one period, or only
        those after after_entry_no) with its postings and, for a settlement or
        reversal, the settlement row's posting inputs; streamed (one joined
        cursor), so a journal of any length fits in memory."""
        cursor = self.reader().execute(
            "SELECT e.entry_no, e.setl_id, e.kind, e.setlym, e.created_us, e.prev_hash, e.hash, "
            "s.insuplc_admdvs, s.mdtrtarea_admvs, s.payee_code, s.hifp_pay_fen, s.acct_pay_fen, "
            "p.book, p.account, p.amount_fen "
            "FROM journal_entries e "
            "LEFT JOIN settlements s ON s.setl_id = e.setl_id AND e.kind IN ('settle', 'reverse') "
            "LEFT JOIN postings p ON p.entry_no = e.entry_no "
            "WHERE e.entry_no > ? AND (? IS NULL OR e.setlym = ?) "
            "ORDER BY e.entry_no, p.rowid",
            (after_entry_no, setlym, setlym),
        )
        for _, rows in itertools.groupby(cursor, key=lambda row: row[0]):
            first = next(rows)
            postings = [(book, account, amount) for *_, book, account, amount in itertools.chain([first], rows)
                        if book is not None]
            settlement = None if first[7] is None else tuple(first[7:12])
            yield JournalRow(*first[:7], settlement, postings)  # type: ignore[arg-type]

    def flags_of_day(self, day: str, fixmedins_code: str = "", after_flag_no: int = 0,
                     limit: int = -1) -> list[dict[str, Any]]:
        return list(flags_of_day(self.reader(), day, fixmedins_code, after_flag_no, limit))

    def chain_heads(self) -> dict[int, tuple[int, str]]:
        return {}  # one chain, whose head is its last entry

    def unreachable(self) -> str | None:
        return None  # a local file: its failures are the writes' own errors

    # ---- verified checkpoints of the chain (ledger/chain_checkpoint.py) ----
    def chain_checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""
        conn = self.reader()
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chain_checkpoints'"
                        ).fetchone() is None:
            return []  # a ledger from before checkpoints, opened read only
        return [Checkpoint(*row) for row in conn.execute(
            "SELECT entry_no, entry_hash, setl_no, verified_us, prev_hash, hash FROM chain_checkpoints "
            "ORDER BY entry_no")]

    def entry_hash(self, entry_no: int) -> str | None:
        """The stored hash of an entry (None: no such entry)."""
        row = self.reader().execute("SELECT hash FROM journal_entries WHERE entry_no = ?", (entry_no,)).fetchone()
        return row[0] if row else None

    def journal_head(self) -> tuple[int, str, int]:
        """(last entry_no, its hash, last setl_no). Settlements commit with
        their entries: every settlement up to that setl_no has its entry
        committed by then, unless the ledger was changed."""
        conn = self.reader()
        row = conn.execute("SELECT entry_no, hash FROM journal_entries ORDER BY entry_no DESC LIMIT 1").fetchone()
        setl_no = conn.execute("SELECT COALESCE(MAX(setl_no), 0) FROM settlements").fetchone()[0]
        return (row[0], row[1], setl_no) if row else (0, GENESIS_HASH, setl_no)

    def settlements_without_entry(self, after_setl_no: int, up_to_setl_no: int, limit: int) -> list[str]:
        """The first `limit` settlements in (after_setl_no, up_to_setl_no] with no journal entry."""
        return [row[0] for row in self.reader().execute(
            "SELECT s.setl_id FROM settlements s WHERE s.setl_no > ? AND s.setl_no <= ? AND NOT EXISTS "
            "(SELECT 1 FROM journal_entries j WHERE j.setl_id = s.setl_id) ORDER BY s.setl_no LIMIT ?",
            (after_setl_no, up_to_setl_no, limit))]

    def record_chain_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Appends a checkpoint on the writer's connection (in its open transaction, if any)."""
        with storage_errors:
            self._write.execute(
                "INSERT INTO chain_checkpoints (entry_no, entry_hash, setl_no, verified_us, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (checkpoint.entry_no, checkpoint.entry_hash, checkpoint.setl_no, checkpoint.verified_us,
                 checkpoint.prev_hash, checkpoint.hash))

    def orphan_postings(self, after_entry_no: int | None = None) -> int:
        """Postings whose journal entry does not exist (only those numbered
        after after_entry_no, if given)."""
        # NOT EXISTS looks each entry up by its key on both backends; PostgreSQL
        # hashes a NOT IN subquery only within work_mem and rescans it past that.
        orphan = "NOT EXISTS (SELECT 1 FROM journal_entries j WHERE j.entry_no = p.entry_no)"
        if after_entry_no is None:
            return self.reader().execute(f"SELECT COUNT(*) FROM postings p WHERE {orphan}").fetchone()[0]
        return self.reader().execute(
            f"SELECT COUNT(*) FROM postings p WHERE p.entry_no > ? AND {orphan}", (after_entry_no,)
        ).fetchone()[0]

"""What a load phase costs the PostgreSQL database: the CPU of its
processes (the postmaster's tree, read from /proc when the database runs on
this machine) and the WAL bytes it wrote (pg_current_wal_lsn), read before
and after each phase through one connection of its own.

CPU is counted per process: a backend that exits during a phase takes its
CPU with it (connection pools keep theirs for the whole run), one that
starts counts from zero. On SQLite the database work runs in the server's
writer process, so it is in the server's CPU and there is no probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medsettle.client.loadgen import cpu_s, process_tree


@dataclass(frozen=True, slots=True)
class DatabaseSample:
    cpu_s_by_pid: dict[int, float] | None  # None: the database runs on another machine
    wal_bytes: int


def parent_pid(pid: int) -> int | None:
    """The parent of a process on this machine, or None if there is no such process here."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return int(stat.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def phase_cost(before: DatabaseSample, after: DatabaseSample, calls: int) -> dict[str, float]:
    """Database CPU milliseconds and WAL bytes per call between two samples."""
    per_call = max(1, calls)
    cost = {"wal_bytes_per_call": round((after.wal_bytes - before.wal_bytes) / per_call, 1)}
    if before.cpu_s_by_pid is not None and after.cpu_s_by_pid is not None:
        spent = sum(now - before.cpu_s_by_pid.get(pid, 0.0) for pid, now in after.cpu_s_by_pid.items())
        cost["cpu_ms_per_call"] = round(1000 * spent / per_call, 4)
    return cost


class PostgresProbe:
    """Samples one PostgreSQL server (the database of a URL)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn: Any = psycopg.connect(url, autocommit=True, application_name="medsettle-load-probe")
        backend = self._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # The backend's parent is the postmaster if the server runs here (same PID namespace, same host).
        postmaster = parent_pid(backend)
        self._postmaster = postmaster if postmaster and _is_postgres(postmaster) else None

    def sample(self) -> DatabaseSample:
        wal = self._conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()[0]
        cpu = None
        if self._postmaster is not None:
            cpu = {pid: s for pid in process_tree(self._postmaster) if (s := cpu_s(pid)) is not None}
        return DatabaseSample(cpu, int(wal))

    @property
    def local(self) -> bool:
        return self._postmaster is not None

    def close(self) -> None:
        self._conn.close()


def _is_postgres(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip() in ("postgres", "postmaster")
    except OSError:
        return False

"""A PostgreSQL writer's batch in counts: round trips and statements per
batch, and the database's CPU per settlement, for batches of settlements
run by the processor on one store (no gRPC), through a counting TCP proxy
in this process. Counts repeat run to run on a loaded machine; the CPU
figures are CPU time (not wall time) and best compared within one run.

- round trips: the writer's sends to the database that follow an answer
  from it (a pipeline of many statements is one);
- statements: what psycopg was given (each row of an executemany is one);
- database CPU: user + system time of the writer's backend process
  (/proc, so only when the database runs on this machine).

Then the shared lock every batch takes with its numbers (the clearing
snapshot's guard, ledger/storage/postgres.py NUMBERS_LOCK) measured
apart: transactions that take only the numbers, with and without the
lock, alternating in blocks, the backend's CPU per transaction.

    benchmarks/pg_batch_round_trips.py --db postgresql:///bench?host=/tmp/pg --sizes 1,8 --batches 300

--db must name an empty database on a test server (the sample reference
data is loaded into it and settled against).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medsettle.ledger.clock import CHINA_TZ, FixedClock  # noqa: E402
from medsettle.ledger.service import open_reference  # noqa: E402
from medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, VisitType  # noqa: E402
from medsettle.ledger.settlement.process import SettleCommand, SettlementProcessor  # noqa: E402
from medsettle.ledger.storage.postgres import NUMBERS_LOCK, PostgresLedgerStore  # noqa: E402

import datetime as dt  # noqa: E402

CLOCK = FixedClock(dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ))
# the sample reference data's Guangzhou employee and resident; a hospital with a quota and one without
PERSONS = (("44010000000000000001", 310), ("44010000000000000002", 390))
HOSPITALS = {"quota": "H44010100001", "no-quota": "H44010100002"}
WARM_BATCHES = 10  # statements are prepared from their fifth run
LOCK_BLOCKS, LOCK_BLOCK = 10, 1000  # the lock measured apart: blocks of transactions, alternating


class CountingProxy:
    """Forwards TCP to the database and counts, per connection, the
    client's sends that follow the server's data (round trips)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.trips: dict[int, int] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def total(self) -> int:
        return sum(self.trips.values())

    def _accept(self) -> None:
        n = 0
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.target)
            for side in (client, server):
                side.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.trips[n] = 0
            threading.Thread(target=self._pump, args=(n, client, server), daemon=True).start()
            n += 1

    def _pump(self, n: int, client: socket.socket, server: socket.socket) -> None:
        last = "server"
        while True:
            ready, _, _ = select.select([client, server], [], [])
            for side in ready:
                data = side.recv(65536)
                if not data:
                    return
                if side is client:
                    if last == "server":
                        self.trips[n] += 1
                    last = "client"
                    server.sendall(data)
                else:
                    last = "server"
                    client.sendall(data)


class StatementCount:
    """Statements psycopg is given on one connection (each executemany row is one)."""

    def __init__(self) -> None:
        self.count, self.watched = 0, -1
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        counter = self

        def counted_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if id(cursor.connection) == counter.watched:
                counter.count += 1
            return execute(cursor, query, *args, **kwargs)

        def counted_executemany(cursor: Any, query: Any, rows: Any, *args: Any, **kwargs: Any) -> Any:
            rows = list(rows)
            if id(cursor.connection) == counter.watched:
                counter.count += len(rows)
            return executemany(cursor, query, rows, *args, **kwargs)

        psycopg.Cursor.execute, psycopg.Cursor.executemany = counted_execute, counted_executemany  # type: ignore[method-assign]


def backend_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # the database runs elsewhere
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through(proxy: CountingProxy, url: str) -> str:
    parts = conninfo_to_dict(url)
    parts.update(host="127.0.0.1", port=str(proxy.port))
    return make_conninfo("", **parts)


def bills(size: int, hospital: str, tag: str) -> list[SettleCommand]:
    commands = []
    for i in range(size):
        psn_no, insutype = PERSONS[i % len(PERSONS)]
        commands.append(SettleCommand(Bill(
            msgid=f"{tag}-{i}", fixmedins_code=hospital, psn_no=psn_no, insutype=insutype, insuplc_admdvs="440100",
            visit_type=VisitType.OUTPATIENT, acct_used_flag=True,
            fee_lines=(FeeLine("1", "S0001", 1, 2500), FeeLine("2", "XB0201", 1, 3500))), True))
    return commands


def measure_batches(store: PostgresLedgerStore, proxy: CountingProxy, statements: StatementCount, size: int,
                    hospital: str, batches: int) -> dict[str, float | None]:
    processor = SettlementProcessor(store, open_reference(store, CLOCK), CLOCK)
    tag = f"{hospital}-{size}-{time.monotonic_ns()}"
    for n in range(WARM_BATCHES):
        processor.run_batch(bills(size, hospital, f"{tag}-warm{n}"))
    conn = store.writer_connection().conn
    statements.watched, statements.count = id(conn), 0
    trips, cpu, own = proxy.total(), backend_cpu_s(conn.info.backend_pid), time.thread_time()
    for n in range(batches):
        outcomes = processor.run_batch(bills(size, hospital, f"{tag}-{n}"))
        assert all(isinstance(o, Settlement) for o in outcomes), outcomes[:1]
    cpu_after = backend_cpu_s(conn.info.backend_pid)
    settled = size * batches
    return {"round_trips_per_batch": (proxy.total() - trips) / batches,
            "statements_per_batch": statements.count / batches,
            "database_cpu_us_per_settlement": None if cpu is None or cpu_after is None else
            1e6 * (cpu_after - cpu) / settled,
            "writer_cpu_us_per_settlement": 1e6 * (time.thread_time() - own) / settled,
            "conflicts": processor.conflicts}


def measure_numbers_lock(url: str) -> dict[str, float] | None:
    """The numbers statement alone in its transaction, with the shared lock and without."""
    with psycopg.connect(url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        if backend_cpu_s(pid) is None:
            return None
        with_lock = ("WITH numbering AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(%s, %s)) "
                     "SELECT nextval('settlement_numbers'), nextval('entry_numbers') FROM numbering", NUMBERS_LOCK)
        without = ("SELECT nextval('settlement_numbers'), nextval('entry_numbers')", ())
        spent = {"with_lock": 0.0, "without_lock": 0.0}

        def block(name: str, statement: tuple[str, Any]) -> None:
            before = backend_cpu_s(pid)
            for _ in range(LOCK_BLOCK):
                with conn.pipeline():
                    conn.execute("BEGIN")
                    conn.execute(*statement, prepare=True)
                    conn.execute("COMMIT")
            spent[name] += backend_cpu_s(pid) - before  # type: ignore[operator]

        for _ in range(LOCK_BLOCKS):
            block("with_lock", with_lock)
            block("without_lock", without)
        runs = LOCK_BLOCKS * LOCK_BLOCK
        return {name: 1e6 * total / runs for name, total in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="an empty database on a test server")
    parser.add_argument("--sizes", default="1,8", help="settlements per batch, comma-separated")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--hospitals", default="quota,no-quota", help="of " + ", ".join(HOSPITALS))
    args = parser.parse_args(argv)
    parts = conninfo_to_dict(args.db)
    proxy = CountingProxy(str(parts.get("host") or "127.0.0.1"), int(parts.get("port") or 5432))
    if str(parts.get("host", "")).startswith("/"):
        raise SystemExit("--db: name the server by TCP host and port (the proxy forwards TCP)")
    statements = StatementCount()
    store = PostgresLedgerStore(through(proxy, args.db))
    try:
        for hospital in args.hospitals.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                result = measure_batches(store, proxy, statements, size, HOSPITALS[hospital], args.batches)
                print(f"{hospital:8} batches of {size:3}: " + ", ".join(
                    f"{name} {value:.2f}" if isinstance(value, float) else f"{name} {value}"
                    for name, value in result.items()))
    finally:
        store.close()
    lock = measure_numbers_lock(args.db)
    if lock is not None:
        print("the numbers alone, backend CPU us per transaction: " + ", ".join(
            f"{name} {value:.1f}" for name, value in lock.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

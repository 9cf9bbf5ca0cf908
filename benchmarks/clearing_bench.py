"""Clearing at scale: generates a month of settlements directly into a
SQLite ledger (the fast path: bulk inserts of settlements, journal entries
with a valid SHA-256 chain, and postings made by the real posting rules),
then runs `medsettle clear` on it as a separate process and reports the
wall time, CPU time and that process's peak resident memory.

    .venv/bin/python benchmarks/clearing_bench.py --settlements 1000000
    .venv/bin/python benchmarks/clearing_bench.py --settlements 200000 --history-months 3

`--history-months K` generates K earlier months first (uncleared), so the
run shows what a ledger's history costs the clearing of one month.

The ledger's indexes are built after the load (by sorting, as CREATE INDEX
does), and the checkpoint a daily `medsettle verify --since-checkpoint
--checkpoint` leaves is recorded `--unverified-days` (default 1) before the
month's end, so the run checks that last day's entries one by one and the
month in sums (docs/clearing.md); `--unverified-days -1` records none.

Memory is measured as the clearing process's ru_maxrss (os.wait4), so the
generator's own memory does not count. `--json` prints the measurement and
the generator's totals as one JSON object (the e2e test uses a small run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from medsettle.ledger.clearing.netting import prepay_postings
from medsettle.ledger.clock import CHINA_TZ
from medsettle.ledger.posting.journal import GENESIS_HASH, entry_hash
from medsettle.ledger.posting.rules import settlement_postings
from medsettle.ledger.storage.sqlite import SETTLEMENT_COLUMNS, SqliteLedgerStore, connect, init_schema, to_us
from medsettle.ledger.verify import append_checkpoint

PROVINCE = "44"
PERIOD = "2026-10"
CLEARING_CLOCK = "2026-11-02T09:00:00+08:00"
BATCH = 20_000
INSERT_SETTLEMENT = (f"INSERT INTO settlements ({', '.join(SETTLEMENT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(SETTLEMENT_COLUMNS))})")
INSERT_ENTRY = ("INSERT INTO journal_entries (entry_no, setl_id, kind, setlym, created_us, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
INSERT_POSTING = "INSERT INTO postings (entry_no, setlym, book, account, amount_fen) VALUES (?, ?, ?, ?, ?)"
CLR_TYPES = (11, 11, 11, 21, 41)


class MonthGenerator:
    """A month of traffic: most visits local, some in-province cross-region,
    some cross-province (both directions), about 1 % reversed in the month."""

    def __init__(self, settlements: int, agencies: int, institutions: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.target = settlements
        self.here = [f"44{k:02d}00" for k in range(1, agencies + 1)]
        self.elsewhere = [f"{p}{k:02d}00" for p in ("13", "31", "51") for k in range(1, 6)]
        self.institutions = {
            region: [f"H{region}{n:05d}" for n in range(1, institutions // len(self.here) + 2)]
            for region in self.here + self.elsewhere
        }
        self.setl_no = 0
        self.entry_no = 0
        self.last_hash = GENESIS_HASH
        self.totals: dict[str, int] = defaultdict(int)  # what the statement must show (treatment place in 44)
        self.begin_month(PERIOD)

    def begin_month(self, period: str) -> None:
        """The settlements that follow belong to this month (the hash chain
        and the numbering go on); the totals count only PERIOD's."""
        year, month = (int(part) for part in period.split("-"))
        self.period = period
        self.first_setl_no = self.setl_no
        self.start_us = to_us(dt.datetime(year, month, 1, tzinfo=CHINA_TZ))
        self.step_us = (28 * 86_400 * 1_000_000) // (self.target + 1)  # every month has 28 days

    def places(self) -> tuple[str, str]:
        roll = self.rng.random()
        treatment = self.rng.choice(self.here)
        if roll < 0.75:
            return treatment, treatment
        if roll < 0.92:
            return treatment, self.rng.choice([r for r in self.here if r != treatment])
        if roll < 0.96:
            return treatment, self.rng.choice(self.elsewhere)
        return self.rng.choice(self.elsewhere), treatment

    def split(self) -> list[int]:
        medfee = self.rng.randrange(1_000, 500_000)
        fulamt = medfee // 10
        pre = medfee // 20
        inscp = medfee - fulamt - pre
        hifp = inscp * 7 // 10
        psn_part = medfee - hifp
        acct = min(psn_part, self.rng.choice((0, 0, 5_000, 50_000)))
        return [medfee, fulamt, 0, pre, inscp, 0, hifp, hifp, psn_part, 0, acct, psn_part - acct]

    def rows(self, kind: int, original: tuple[Any, ...] | None) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], tuple[Any, ...]]:
        self.setl_no += 1
        self.entry_no += 1
        setl_id = f"S{self.setl_no:012d}"
        time_us = self.start_us + (self.setl_no - self.first_setl_no) * self.step_us
        if original is None:
            treatment, insurance = self.places()
            code = self.rng.choice(self.institutions[treatment])
            amounts = self.split()
            psn_no = f"{insurance}{self.rng.randrange(10**13):014d}"
            orig_id, clr_type = "", self.rng.choice(CLR_TYPES)
        else:
            code, psn_no, insurance, treatment, clr_type = original[1], original[6], original[8], original[9], original[10]
            amounts = [-a for a in original[14:26]]
            orig_id = original[0]
        pay_loc = 2 if insurance == treatment else (3 if insurance[:2] == treatment[:2] else 4)
        settlement = (setl_id, code, f"B{self.setl_no:012d}", "bench", kind, orig_id, psn_no, 310, insurance,
                      treatment, clr_type, pay_loc, time_us, self.period, *amounts, 0, "[]", "", code)
        postings = settlement_postings(insurance, treatment, code, amounts[6], amounts[10])
        entry_kind = "settle" if kind == 1 else "reverse"
        digest = entry_hash(self.last_hash, self.entry_no, setl_id, entry_kind, self.period, time_us, postings)
        entry = (self.entry_no, setl_id, entry_kind, self.period, time_us, self.last_hash, digest)
        self.last_hash = digest
        if treatment[:2] == PROVINCE and self.period == PERIOD:
            for name, value in (("setl_cnt", 1), ("medfee_sumamt_fen", amounts[0]),
                                ("fund_pay_sumamt_fen", amounts[7]), ("payable_fen", amounts[6] + amounts[10])):
                self.totals[name] += value
        return settlement, [(self.entry_no, self.period, p.book, p.account, p.amount_fen) for p in postings], entry

    def prepay(self, agency: str, amount_fen: int) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
        self.entry_no += 1
        time_us = self.start_us + 3_600_000_000
        postings = prepay_postings(PROVINCE, agency, amount_fen)
        setl_id = f"PREPAY-{agency}-{time_us}"
        assert self.period == PERIOD
        digest = entry_hash(self.last_hash, self.entry_no, setl_id, "prepay", PERIOD, time_us, postings)
        entry = (self.entry_no, setl_id, "prepay", PERIOD, time_us, self.last_hash, digest)
        self.last_hash = digest
        return [(self.entry_no, PERIOD, p.book, p.account, p.amount_fen) for p in postings], entry


def history_periods(months: int) -> list[str]:
    """The `months` periods before PERIOD, oldest first."""
    year, month = (int(part) for part in PERIOD.split("-"))
    index = year * 12 + month - 1
    return [f"{i // 12}-{i % 12 + 1:02d}" for i in range(index - months, index)]


LOADED_TABLES = ("settlements", "journal_entries", "postings")


def drop_secondary_indexes(conn: sqlite3.Connection) -> list[str]:
    """Drops the loaded tables' own indexes (not their UNIQUE constraints) and
    returns their SQL: built once after the load, by sorting, instead of
    row by row in random order (most of a naive load's time)."""
    rows = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' * len(LOADED_TABLES))})", LOADED_TABLES).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [sql for _, sql in rows]


def generate(path: Path, settlements: int, agencies: int, institutions: int, seed: int,
             history_months: int = 0, unverified: int | None = None) -> dict[str, int]:
    """PERIOD's settlements, after `history_months` earlier months of as
    many each (uncleared: clearing PERIOD must not depend on them).
    unverified: leave this many of PERIOD's last settlements after the
    newest checkpoint, as a daily `verify --since-checkpoint --checkpoint`
    leaves them (None: no checkpoint, the whole journal is checked)."""
    gen = MonthGenerator(settlements, agencies, institutions, seed)
    conn = connect(path)
    init_schema(conn)
    conn.execute("PRAGMA synchronous = OFF")  # generation only; the clearing run uses the normal settings
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB for the index builds
    index_sql = drop_secondary_indexes(conn)
    recent: list[tuple[Any, ...]] = []
    cut: tuple[int, str, int] | None = None  # (entry_no, hash, setl_no) the checkpoint vouches for
    for period in [*history_periods(history_months), PERIOD]:
        gen.begin_month(period)
        if period == PERIOD:
            prepay_postings_rows, prepay_entries = [], []
            for agency in gen.here[:3]:
                rows, entry = gen.prepay(agency, 50_000_000)
                prepay_postings_rows.extend(rows)
                prepay_entries.append(entry)
            conn.execute("BEGIN")
            conn.executemany(INSERT_ENTRY, prepay_entries)
            conn.executemany(INSERT_POSTING, prepay_postings_rows)
            conn.execute("COMMIT")
        made = 0
        while made < settlements:
            if period == PERIOD and unverified and made == max(0, settlements - unverified):
                cut = (gen.entry_no, gen.last_hash, gen.setl_no)
            s_rows, e_rows, p_rows = [], [], []
            batch = min(BATCH, settlements - made)
            if period == PERIOD and unverified is not None and made < settlements - unverified:
                batch = min(batch, settlements - unverified - made)  # the checkpoint falls between batches
            for _ in range(batch):
                if recent and gen.rng.random() < 0.01:  # may reverse an earlier month's settlement
                    settlement, postings, entry = gen.rows(2, recent.pop(gen.rng.randrange(len(recent))))
                else:
                    settlement, postings, entry = gen.rows(1, None)
                    if len(recent) < 1_000:
                        recent.append(settlement)
                s_rows.append(settlement)
                e_rows.append(entry)
                p_rows.extend(postings)
                made += 1
            conn.execute("BEGIN")
            conn.executemany(INSERT_SETTLEMENT, s_rows)
            conn.executemany(INSERT_ENTRY, e_rows)
            conn.executemany(INSERT_POSTING, p_rows)
            conn.execute("COMMIT")
        if period == PERIOD and unverified == 0:
            cut = (gen.entry_no, gen.last_hash, gen.setl_no)
    for sql in index_sql:
        conn.execute(sql)
    conn.close()
    if cut is not None:
        record_daily_checkpoint(path, *cut)
    return dict(gen.totals)


def record_daily_checkpoint(path: Path, entry_no: int, entry_hash: str, setl_no: int) -> None:
    """The checkpoint a daily `medsettle verify --since-checkpoint --checkpoint`
    would have recorded at entry_no (the generator built the chain up to
    there itself, with the service's own hash and posting code)."""
    store = SqliteLedgerStore(path)
    try:
        store.begin()
        append_checkpoint(store, entry_no, entry_hash, setl_no, to_us(dt.datetime(2026, 10, 31, 2, tzinfo=CHINA_TZ)))
        store.commit()
    finally:
        store.close()


def run_clear(db: Path, statement_dir: Path) -> tuple[float, float, int, int, str, str]:
    """(wall seconds, CPU seconds, peak RSS in KiB, exit code, stdout, stderr)
    of `medsettle clear` as its own process. CPU time is reported too because
    wall time on a shared machine depends on what else runs."""
    command = [sys.executable, "-m", "medsettle", "clear", "--province", PROVINCE, "--period", PERIOD,
               "--db", str(db), "--clock", CLEARING_CLOCK, "--statement-dir", str(statement_dir), "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu_s = usage.ru_utime + usage.ru_stime
        return seconds, cpu_s, usage.ru_maxrss, process.returncode, out.read().decode(), err.read().decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settlements", type=int, default=1_000_000)
    parser.add_argument("--agencies", type=int, default=21, help="agencies in province 44")
    parser.add_argument("--institutions", type=int, default=3_000, help="institutions in province 44 (about)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--history-months", type=int, default=0,
                        help="earlier months of as many settlements each, left uncleared, before the cleared one")
    parser.add_argument("--unverified-days", type=int, default=1,
                        help="days at the month's end after the newest checkpoint (a daily verify records one); "
                             "-1: no checkpoint at all, clearing checks every entry one by one")
    parser.add_argument("--db", type=Path, help="keep the generated ledger here (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--generate-only", action="store_true", help="with --db: generate the ledger, do not clear it")
    args = parser.parse_args()
    if (not 1 <= args.settlements <= 50_000_000 or not 1 <= args.agencies <= 99 or not 1 <= args.institutions <= 99_999
            or not 0 <= args.history_months <= 24 or not -1 <= args.unverified_days <= 28):
        parser.error("--settlements 1..50000000, --agencies 1..99, --institutions 1..99999, --history-months 0..24, "
                     "--unverified-days -1..28")
    # every month of the generator has 28 days of even traffic
    unverified = None if args.unverified_days < 0 else args.settlements * args.unverified_days // 28
    if args.generate_only:
        if args.db is None or args.db.exists():
            parser.error("--generate-only needs --db of a file that does not exist yet")
        print(json.dumps(generate(args.db, args.settlements, args.agencies, args.institutions, args.seed,
                                  args.history_months, unverified)))
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "clearing-bench.db"
        if db.exists():
            parser.error(f"--db {db} exists; the benchmark generates a fresh ledger")
        started = time.perf_counter()
        totals = generate(db, args.settlements, args.agencies, args.institutions, args.seed, args.history_months,
                          unverified)
        generated_s = time.perf_counter() - started
        seconds, cpu_s, rss_kib, code, stdout, stderr = run_clear(db, Path(scratch) / "statement")
        statement = json.loads(stdout) if code == 0 else None
        report = {
            "settlements": args.settlements,
            "history_months": args.history_months,
            "unverified_settlements": unverified,
            "db_mib": round(db.stat().st_size / 2**20, 1),
            "generate_s": round(generated_s, 1),
            "clear_s": round(seconds, 2),
            "clear_cpu_s": round(cpu_s, 2),
            "clear_peak_rss_mib": round(rss_kib / 1024, 1),
            "exit_code": code,
            "expected_totals": totals,
            "statement_totals": statement["totals"] if statement else None,
            "positions": len(statement["positions"]) if statement else None,
            "institutions": len(statement["institutions"]) if statement else None,
        }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
        if code != 0:
            print(stderr[-2000:], file=sys.stderr)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

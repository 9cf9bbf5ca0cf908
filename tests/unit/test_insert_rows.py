"""insert_rows writes many rows per INSERT statement: every row lands once,
in order (rowid order is insert order: settlements take their setl_no so),
within SQLite's least parameter bound, and a statement's failure leaves the
transaction to roll back whole."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.storage.sqlite import (
    EXACT_KEYS_UP_TO,
    EXACT_ROWS_UP_TO,
    LOOKUP_CHUNK,
    MAX_PARAMETERS,
    MIN_ROWS_PER_INSERT,
    STATEMENT_CACHE,
    chunks,
    insert_rows,
)


def table_of(width: int) -> tuple[sqlite3.Connection, str]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    columns = [f"c{i}" for i in range(width)]
    conn.execute(f"CREATE TABLE t (n INTEGER PRIMARY KEY, {', '.join(columns)}, UNIQUE (c0))")
    return conn, f"INSERT INTO t ({', '.join(columns)})"


class CountingConnection:
    """Counts the statements run and the parameters of the largest."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.statements, self.most_parameters = conn, 0, 0
        self.texts: set[str] = set()

    def execute(self, sql: str, params: tuple) -> None:
        self.statements += 1
        self.texts.add(sql)
        self.most_parameters = max(self.most_parameters, len(params))
        self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list) -> None:
        self.statements += 1
        self.texts.add(sql)
        self.conn.executemany(sql, rows)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 40))
def test_every_row_lands_once_in_order(count: int, width: int) -> None:
    conn, insert_into = table_of(width)
    rows = [tuple([f"k{n}"] + [n * width + i for i in range(1, width)]) for n in range(count)]
    counting = CountingConnection(conn)
    insert_rows(counting, insert_into, width, rows)  # type: ignore[arg-type]
    stored = conn.execute("SELECT * FROM t ORDER BY n").fetchall()
    assert [row[1:] for row in stored] == rows
    assert counting.most_parameters <= MAX_PARAMETERS
    full = next(size for size in (64, 32, 16, 8, 4, 2, 1) if size * width <= MAX_PARAMETERS)
    # full statements, at most one of each smaller power of two, then one
    # statement (or executemany) of the last rows
    assert counting.statements <= count // full + full.bit_length()


@pytest.mark.parametrize("width", [5, 7, 30])
def test_every_batch_size_of_a_table_takes_few_statement_texts(width: int) -> None:
    """The prepared statements a table needs, whatever its batches' sizes, fit
    the cache with room for the other tables' (a pushed-out one is parsed again)."""
    conn, insert_into = table_of(width)
    counting = CountingConnection(conn)
    conn.execute("BEGIN")
    for count in range(0, 520):
        insert_rows(counting, insert_into, width, [tuple([f"k{count}-{n}"] + [n] * (width - 1)) for n in range(count)])
    conn.execute("ROLLBACK")
    exact_sizes = EXACT_ROWS_UP_TO - MIN_ROWS_PER_INSERT + 1
    assert len(counting.texts) <= exact_sizes + 1 + 7  # the one-row executemany, the powers of two up to 64
    assert 8 * len(counting.texts) <= STATEMENT_CACHE


def test_a_refused_row_fails_the_statement_and_the_transaction_rolls_back_whole() -> None:
    conn, insert_into = table_of(2)
    conn.execute("INSERT INTO t (c0, c1) VALUES ('k7', 0)")
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: t.c0"):
        insert_rows(conn, insert_into, 2, [(f"k{n}", n) for n in range(100)])
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT c0 FROM t").fetchall() == [("k7",)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 40))
def test_an_upsert_clause_updates_the_rows_already_there(count: int, width: int) -> None:
    """With on_conflict every row lands once: new keys are inserted, stored
    keys take the row's values, in statements of every size insert_rows uses."""
    conn, insert_into = table_of(width)
    conn.executemany(f"{insert_into} VALUES ({', '.join('?' * width)})",
                     [tuple([f"k{n}"] + [-1] * (width - 1)) for n in range(0, count, 3)])
    rows = [tuple([f"k{n}"] + [n * width + i for i in range(1, width)]) for n in range(count)]
    update = ", ".join(f"c{i} = excluded.c{i}" for i in range(1, width)) or "c0 = excluded.c0"
    insert_rows(conn, insert_into, width, rows, f"ON CONFLICT (c0) DO UPDATE SET {update}")
    stored = conn.execute(f"SELECT {', '.join(f'c{i}' for i in range(width))} FROM t ORDER BY c0").fetchall()
    assert stored == sorted(rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10_000), unique=True, max_size=1_200))
def test_lookup_chunks_hold_every_key_once_in_few_lengths(keys: list[int]) -> None:
    """chunks: every key in order, a chunk within LOOKUP_CHUNK, its padding
    only repeats of its last key, and its length exact up to EXACT_KEYS_UP_TO
    or a power of two (so IN lists of every batch take few statement texts)."""
    seen: list[int] = []
    for chunk in chunks(keys):
        assert 1 <= len(chunk) <= LOOKUP_CHUNK
        assert len(chunk) <= EXACT_KEYS_UP_TO or len(chunk) & (len(chunk) - 1) == 0
        distinct = list(dict.fromkeys(chunk))
        assert chunk[len(distinct):] == [distinct[-1]] * (len(chunk) - len(distinct))
        seen.extend(distinct)
    assert seen == keys
    assert 2 * LOOKUP_CHUNK <= MAX_PARAMETERS  # find_by_keys: two IN lists of a chunk

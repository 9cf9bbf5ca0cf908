"""The ledger's invariants checked with SQL on a PostgreSQL ledger, after
several servers wrote it: what each multi-server test ends with."""

from __future__ import annotations

from collections import defaultdict

import psycopg


def ledger_invariant_breaks(url: str, acknowledged: dict[str, str], initial_balances: dict[str, int]) -> list[str]:
    """Every break found (empty: sound). acknowledged: msgid -> setl_id
    answered to a client; initial_balances: psn_no -> account balance before
    any settlement."""
    breaks: list[str] = []
    with psycopg.connect(url) as conn:
        q = conn.execute
        for entry_no, book, total in q("SELECT entry_no, book, SUM(amount_fen) FROM postings "
                                       "GROUP BY entry_no, book HAVING SUM(amount_fen) <> 0"):
            breaks.append(f"entry {entry_no} does not sum to zero in book {book} ({total})")
        for book, total in q("SELECT book, SUM(amount_fen) FROM postings GROUP BY book HAVING SUM(amount_fen) <> 0"):
            breaks.append(f"book {book} does not balance ({total})")
        for code, msgid, n in q("SELECT fixmedins_code, msgid, COUNT(*) FROM settlements "
                                "GROUP BY fixmedins_code, msgid HAVING COUNT(*) > 1"):
            breaks.append(f"({code}, {msgid}) stored {n} times")
        for setl_id, n in q("SELECT setl_id, COUNT(*) FROM journal_entries GROUP BY setl_id HAVING COUNT(*) > 1"):
            breaks.append(f"{setl_id} has {n} journal entries")
        for orig, n in q("SELECT orig_setl_id, COUNT(*) FROM settlements WHERE kind = 2 "
                         "GROUP BY orig_setl_id HAVING COUNT(*) > 1"):
            breaks.append(f"{orig} reversed {n} times")
        stored = dict(q("SELECT msgid, setl_id FROM settlements").fetchall())
        for msgid, setl_id in sorted(acknowledged.items()):
            if stored.get(msgid) != setl_id:
                breaks.append(f"acknowledged {msgid} -> {setl_id}, stored {stored.get(msgid)}")
        breaks += _balance_chain_breaks(conn, initial_balances)
        breaks += _accumulator_breaks(conn)
    return breaks


def _balance_chain_breaks(conn: psycopg.Connection, initial_balances: dict[str, int]) -> list[str]:
    """Each person's settlements form one chain of balances: each starts from
    the balance the one before left (no two split against one snapshot), and
    the last ends at the stored balance."""
    breaks = []
    steps: dict[str, list[tuple[int, int]]] = defaultdict(list)  # psn -> [(balance before, after)]
    paid: dict[str, int] = defaultdict(int)
    reversed_persons = set()
    for psn_no, kind, acct_pay, balc in conn.execute("SELECT psn_no, kind, acct_pay_fen, balc_fen FROM settlements"):
        paid[psn_no] += acct_pay
        if kind == 1:
            steps[psn_no].append((balc + acct_pay, balc))
        else:
            reversed_persons.add(psn_no)
    final = dict(conn.execute("SELECT psn_no, acct_balc_fen FROM persons").fetchall())
    for psn_no, total in paid.items():
        if initial_balances[psn_no] - total != final[psn_no]:
            breaks.append(f"{psn_no}: {initial_balances[psn_no]} - {total} paid is not the stored {final[psn_no]}")
    for psn_no, chain in steps.items():
        if psn_no in reversed_persons:
            continue  # a reversal gives back: the sum above covers this person
        # settlements only: the balance never rises, so the chain is in order of it
        chain.sort(key=lambda step: (-step[0], -step[1]))
        balance = initial_balances[psn_no]
        for before, after in chain:
            if before != balance:
                breaks.append(f"{psn_no}: a settlement split against balance {before}, the balance was {balance}")
            balance = after
        if balance != final[psn_no]:
            breaks.append(f"{psn_no}: the chain ends at {balance}, the stored balance is {final[psn_no]}")
    return breaks


def _accumulator_breaks(conn: psycopg.Connection) -> list[str]:
    """The year rows are the sums of what the person's settlements used."""
    rows = conn.execute(
        "SELECT y.psn_no, y.year, y.dedc_used_fen, y.fund_paid_fen, "
        "COALESCE(SUM(s.act_pay_dedc_fen), 0), COALESCE(SUM(s.hifp_pay_fen), 0) "
        "FROM person_years y LEFT JOIN settlements s ON s.psn_no = y.psn_no "
        "GROUP BY y.psn_no, y.year, y.dedc_used_fen, y.fund_paid_fen").fetchall()
    return [f"{psn} {year}: accumulators ({dedc}, {fund}) but settlements sum to ({dedc_sum}, {fund_sum})"
            for psn, year, dedc, fund, dedc_sum, fund_sum in rows if (dedc, fund) != (dedc_sum, fund_sum)]

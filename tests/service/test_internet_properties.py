"""Properties of the "Internet+" state through the real service, for any
sequence of e-prescription fills and reversals at pharmacies and follow-ups
and reversals at the Guangzhou internet hospital: a prescription has at
most one live fill (a reversed fill frees it), and the host's quota use is
the fund part of its own and its internet hospital's live settlements."""

from __future__ import annotations

import itertools
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsettle.client.settlement_client import CallRefused
from tests.service.test_internet import GZ_INTERNET, followup, issuing, pharmacy_sale

_example = itertools.count()
ops = st.lists(st.tuples(st.sampled_from(["fill", "reverse_fill", "followup", "reverse_followup"]),
                         st.integers(0, 2), st.sampled_from(["P44030100001", "P44010100001"])), min_size=1, max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_fills_and_quota_follow_the_live_settlements(client, server, steps):
    n = next(_example)
    live_fill: dict[int, tuple[str, str]] = {}  # rx -> (pharmacy, setl_id)
    followups: list[tuple[str, int]] = []  # live (setl_id, hifp_pay_fen)
    for rx in range(3):  # recorded (the issuing visits count against the host's quota too)
        client.settle(issuing(f"RXP{n}-{rx}", msgid=f"PRX{n:04d}{rx}"))
    for i, (op, rx, pharmacy) in enumerate(steps):
        rx_id = f"RXP{n}-{rx}"
        msgid = f"PROP{n:04d}{i:03d}"
        if op == "fill":
            try:
                sale = client.settle(pharmacy_sale(rx_id, code=pharmacy, msgid=msgid))
            except CallRefused as refused:
                assert rx in live_fill and refused.metadata["rule"] == "RX_ALREADY_FILLED"
            else:
                assert rx not in live_fill and sale.clr_type == 41
                live_fill[rx] = (pharmacy, sale.setl_id)
        elif op == "reverse_fill" and rx in live_fill:
            pharmacy_code, setl_id = live_fill.pop(rx)
            client.reverse(f"R{msgid}", pharmacy_code, setl_id)
        elif op == "followup":
            r = client.settle(followup(msgid=msgid, lines=[("S0011", 1, 2500), ("XB0303", 1 + rx, 18000)]))
            followups.append((r.setl_id, r.hifp_pay_fen))
        elif op == "reverse_followup" and followups:
            setl_id, _ = followups.pop(0)
            client.reverse(f"R{msgid}", GZ_INTERNET, setl_id)
    conn = sqlite3.connect(server.db_path)
    try:
        active = dict(conn.execute(
            "SELECT DISTINCT rx_id, setl_id FROM rx_fill_items WHERE reversal_setl_id IS NULL AND rx_id LIKE ?",
            (f"RXP{n}-%",)))
        assert active == {f"RXP{n}-{rx}": setl_id for rx, (_, setl_id) in live_fill.items()}
        live_fund = conn.execute(
            "SELECT COALESCE(SUM(hifp_pay_fen), 0) FROM settlements WHERE fixmedins_code IN ('H44010100001', ?)",
            (GZ_INTERNET,)).fetchone()[0]  # reversals are stored negated: the sum is the live fund part
        used = conn.execute("SELECT COALESCE(SUM(used_fen), 0) FROM host_quota_use WHERE host_code = 'H44010100001'").fetchone()[0]
        assert used == live_fund
    finally:
        conn.close()

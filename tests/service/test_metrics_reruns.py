"""The writer's batch reruns on /metrics, scraped over HTTP from a real
server: a replayed msgid is a key rerun on SQLite (the sole writer inserts
first), in the writer thread and in the writer process, whose count
survives the process being replaced; on PostgreSQL a unique key another
connection commits while the batch waits for it is a conflict rerun."""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest

from medsettle.client.metrics_scrape import Samples, value
from medsettle.client.metrics_scrape import scrape as read_metrics
from medsettle.client.settlement_client import CallRefused, SettlementClient
from tests.conftest import ServerThread


def reruns(server: ServerThread) -> tuple[float, float]:
    samples: Samples = read_metrics(f"http://127.0.0.1:{server.metrics_port}/metrics")
    return (value(samples, "medsettle_writer_conflict_reruns_total"),
            value(samples, "medsettle_writer_key_reruns_total"))


def wait_for(condition, what: str, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
def test_a_replayed_msgid_is_a_key_rerun(db_path, clock, bill, writer_process: bool) -> None:
    server = ServerThread(db_path, clock, writer_process=writer_process, metrics_address="127.0.0.1:0").start()
    try:
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=10.0, retries=0) as client:
            first = bill()
            assert reruns(server) == (0, 0)
            settled = client.settle(first)
            assert reruns(server) == (0, 0)  # a new key: inserted at once
            assert client.settle(first).setl_id == settled.setl_id  # the replay: its insert meets the key
            assert reruns(server) == (0, 1)
            if writer_process:  # a replacement writer adds to what the dead one counted
                dead = server.service.writer_process.pid
                os.kill(dead, signal.SIGKILL)
                wait_for(lambda: server.service.writer_process.pid != dead
                         and server.service.writer_down() is None, "a new writer process")
                assert client.settle(first).setl_id == settled.setl_id
                assert reruns(server) == (0, 2)
    finally:
        server.stop()


def test_a_key_another_server_commits_meanwhile_is_a_conflict_rerun(pg_url: str, clock, bill) -> None:
    server = ServerThread(pg_url, clock, writer_process=True, metrics_address="127.0.0.1:0").start()
    try:
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=30.0, retries=0) as client:
            client.settle(bill())
            racing = bill()
            answers: list[object] = []
            with psycopg.connect(pg_url) as other:  # "another server": its settlement of the same key, uncommitted
                other.execute(
                    "INSERT INTO settlements SELECT setl_no + 1000000000000, 'S-OTHER', fixmedins_code, %s, "
                    "fingerprint, kind, orig_setl_id, psn_no, insutype, insuplc_admdvs, mdtrtarea_admvs, clr_type, "
                    "pay_loc, setl_time_us, setlym, medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen, "
                    "preselfpay_amt_fen, inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen, "
                    "psn_part_amt_fen, hosp_part_amt_fen, acct_pay_fen, psn_cash_pay_fen, balc_fen, line_splits, "
                    "audit_flags, payee_code FROM settlements LIMIT 1", (racing.msgid,))

                def settle_racing() -> None:
                    try:
                        answers.append(client.settle(racing))
                    except CallRefused as refused:
                        answers.append(refused)

                caller = threading.Thread(target=settle_racing)
                caller.start()
                with psycopg.connect(pg_url, autocommit=True) as watcher:  # the server's batch waits on the key
                    wait_for(lambda: watcher.execute(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'INSERT INTO settlements%'").fetchone()[0] == 1, "the batch waiting on the key")
                assert reruns(server) == (0, 0)
                other.commit()
            caller.join(30)
        assert len(answers) == 1
        # the rerun found the other server's settlement under the key, of another bill
        assert isinstance(answers[0], CallRefused) and answers[0].reason == "IDEMPOTENCY_CONFLICT", answers
        assert reruns(server) == (1, 0)
    finally:
        server.stop()

"""Review: the WAL checkpointer's figures on /metrics after the writer
process is replaced. The replacement's checkpointer starts at its first
batch; until then /metrics must not report the dead writer's last state
as if it were still the present one (a lag that grows on an idle server)."""

from __future__ import annotations

import os
import signal
import time

from medsettle.client.metrics_scrape import value
from medsettle.client.settlement_client import SettlementClient
from tests.conftest import ServerThread
from tests.service.test_metrics_wal import metrics, wait_for_metrics


def test_an_idle_server_whose_writer_process_was_replaced_shows_no_growing_checkpoint_lag(db_path, clock,
                                                                                           bill) -> None:
    server = ServerThread(db_path, clock, writer_process=True, metrics_address="127.0.0.1:0").start()
    try:
        with SettlementClient(server.target, tokens=server.tokens, deadline_s=10.0, retries=0) as client:
            client.settle(bill())
            counted = value(wait_for_metrics(server, lambda s: value(s, "medsettle_wal_checkpoints_total") > 0,
                                             "a checkpoint counted"), "medsettle_wal_checkpoints_total")
            dead = server.service.writer_process.pid
            os.kill(dead, signal.SIGKILL)
            writer = server.service.writer_process
            deadline = time.monotonic() + 60
            # until the new writer process said it is ready (its figures published), not only forked
            while writer.pid == dead or writer.starting or writer.down is not None:
                assert time.monotonic() < deadline, "no new writer process"
                time.sleep(0.05)
            time.sleep(1.5)  # idle: nothing is written, nothing to copy; a lag kept from the dead writer would grow
            samples = metrics(server)
            # none: the new writer's checkpointer starts at its first batch (a lag from the dead one's clock is > 0)
            assert value(samples, "medsettle_wal_checkpoint_lag_seconds") == 0
            assert value(samples, "medsettle_wal_checkpoint_failing") == 0
            assert value(samples, "medsettle_wal_checkpoints_total") >= counted  # counters never go back
            client.settle(bill())
            wait_for_metrics(server, lambda s: value(s, "medsettle_wal_checkpoints_total") > counted,
                             "the new writer's checkpoint added to the dead one's")
    finally:
        server.stop()

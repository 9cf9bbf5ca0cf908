"""Shared fixtures: a real server on port 0 in a background thread (its own
event loop), a real client channel, a fixed clock, and bill builders."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from medsettle.client.settlement_client import SettlementClient
from medsettle.ledger.clock import CHINA_TZ, FixedClock
from medsettle.ledger.service import SettlementService
from medsettle.ledger.storage.backends import open_ledger
from medsettle.ledger.storage.port import LedgerStore
from medsettle.ledger.storage.credentials import CredentialError, CredentialStore, Role
from medsettle.ledger.storage.writer import WriterLimits
from medsettle.server.app import RunningServer, create_server
from medsettle.server.auth import CredentialCache
from medsettle.server.logs import configure_logging
from medsettle.v1 import settlement_pb2 as pb
from pg_server import PostgresServer, throwaway_server

# Server logs go to the real stderr, never into a command's captured output.
configure_logging("info", "json", sys.__stderr__)

# A settlement day in October 2026, China time: October can be cleared in November.
SETTLE_AT = dt.datetime(2026, 10, 15, 10, 30, tzinfo=CHINA_TZ)


def issue_token(db_path: Path, fixmedins_code: str = "", role: Role = Role.INSTITUTION) -> str:
    """A new credential in the database at db_path (created if missing); its token."""
    with CredentialStore(db_path) as store:
        return store.issue(role, fixmedins_code, "tests", SETTLE_AT)[1]


class TokensOnDemand(dict[str, str]):
    """fixmedins_code -> bearer token, issued in the server's database the
    first time a code is asked for, so a test can bill any institution
    (also one missing from the reference data) and reach the service's own
    checks; a code no credential can be issued for gets the default token."""

    def __init__(self, db_path: Path) -> None:
        super().__init__()
        self._db_path = db_path
        self._lock = threading.Lock()

    def get(self, code: str, default: str | None = None) -> str | None:  # type: ignore[override]
        with self._lock:
            if code not in self:
                try:
                    self[code] = issue_token(self._db_path, code)
                except CredentialError:
                    return default
            return self[code]


class ServerThread:
    """A real grpc.aio server on 127.0.0.1:0, run on a thread of its own,
    with authentication on: `tokens` has a credential per institution
    (issued on demand), `operator_token` an operator's."""

    def __init__(self, db_path: Path, clock: FixedClock, with_echo: bool = False,
                 writer_limits: WriterLimits = WriterLimits(), writer_process: bool = False,
                 **create_kwargs: object) -> None:
        self.db_path = db_path
        self.writer_process = writer_process
        self.writer_limits = writer_limits
        self.clock = clock
        self.with_echo = with_echo
        self.create_kwargs = create_kwargs
        self.port = 0
        self.metrics_port: int | None = None  # with metrics_address="127.0.0.1:0"
        self.http_port: int | None = None  # with http_address="127.0.0.1:0" (the JSON gateway)
        self.service: SettlementService | None = None
        self.tokens = TokensOnDemand(db_path)
        self.operator_token = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # surfaced by start()
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.service = SettlementService(self.db_path, self.clock, self.writer_limits,
                                         writer_process=self.writer_process)
        with CredentialStore(self.db_path) as store:
            provisioned = store.provision(self.service.reference.institutions, "tests", self.clock.now())
        self.tokens.update(provisioned.tokens)
        self.operator_token = provisioned.operator_token
        # Tokens issued on demand are looked up at once, however many a test issues.
        self.create_kwargs.setdefault("credentials", CredentialCache(self.db_path, miss_lookups_per_s=1_000.0))
        running: RunningServer = await create_server(
            "127.0.0.1:0", self.service, with_echo=self.with_echo, **self.create_kwargs  # type: ignore[arg-type]
        )
        self.port = running.port
        self.metrics_port = running.metrics.port if running.metrics is not None else None
        self.http_port = running.gateway.port if running.gateway is not None else None
        self._ready.set()
        await self._stop.wait()
        await running.stop(5.0)

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow (long crash loops, large volumes) run only when asked
    for with a marker expression, e.g. `-m slow`; CI runs the short forms."""
    if config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _sigint_left_as_found() -> Iterator[None]:
    """A test that leaves SIGINT ignored (as the writer process's loop sets it, run in the test
    process) fails here: every process started later inherits the ignored signal, and a shell
    script cannot trap a signal ignored on entry, so its Ctrl-C handling breaks in another test."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    assert after == before, f"the test left SIGINT's handler changed: {before!r} -> {after!r}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session. Never skipped: if it
    cannot start, every test that needs it fails and says why."""
    with throwaway_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A new empty database on the session's server (isolated per test); its URL."""
    return pg_server.create_database()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(SETTLE_AT)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def server(db_path: Path, clock: FixedClock) -> Iterator[ServerThread]:
    running = ServerThread(db_path, clock).start()
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[SettlementClient]:
    """Acts for every institution (its own token per fixmedins_code) and, for
    calls without one, as an operator."""
    with SettlementClient(server.target, token=server.operator_token, tokens=server.tokens,
                          deadline_s=10.0, retries=0) as c:
        yield c


_counter = iter(range(1, 10**9))


def make_bill(
    code: str = "H44010100001",
    psn_no: str = "44010000000000000001",
    insuplc: str = "440100",
    insutype: int = 310,
    visit: int = pb.VISIT_TYPE_OUTPATIENT,
    lines: list[tuple[str, int, int]] | None = None,
    acct: bool = True,
    msgid: str | None = None,
) -> pb.SettleRequest:
    """A well-formed bill; by default a Guangzhou employee at a Guangzhou hospital."""
    lines = lines or [("S0001", 1, 2500), ("XB0201", 1, 3500), ("XC0401", 1, 1200)]
    return pb.SettleRequest(
        msgid=msgid or f"T{next(_counter):012d}",
        fixmedins_code=code,
        psn_no=psn_no,
        insutype=insutype,  # type: ignore[arg-type]
        insuplc_admdvs=insuplc,
        visit_type=visit,  # type: ignore[arg-type]
        acct_used_flag=acct,
        fee_lines=[pb.FeeLine(feedetl_sn=str(i + 1), hilist_code=c, cnt=n, pric_fen=p) for i, (c, n, p) in enumerate(lines)],
    )


@pytest.fixture
def bill():
    return make_bill


class ServeProcess:
    """`medsettle serve` as a real process on a real database file: started,
    killed (SIGKILL) or stopped (SIGTERM), restarted on the same file. Logs
    go to a file per start (JSON), never into a pipe that could fill up."""

    def __init__(self, db_path: Path, log_dir: Path, *args: str) -> None:
        self.db_path, self.log_dir, self.args = db_path, log_dir, args
        self.process: subprocess.Popen[bytes] | None = None
        self.target = ""
        self.starts = 0

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        self.starts += 1
        port_file = self.log_dir / "port"
        port_file.unlink(missing_ok=True)
        log = open(self.log_dir / f"serve-{self.starts}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "medsettle", "serve", "--db", str(self.db_path), "--listen", "127.0.0.1:0",
             "--port-file", str(port_file), "--log-format", "json", *self.args],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.process.poll() is None, self.logs()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        self.target = f"127.0.0.1:{port_file.read_text().strip()}"
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def logs(self) -> str:
        return "".join(p.read_text("utf-8", "replace") for p in sorted(self.log_dir.glob("serve-*.log")))


@contextlib.contextmanager
def serving_sample(db: str, tmp_path: Path, clock: FixedClock) -> Iterator[SettlementClient]:
    """The sample reference data loaded into a ledger (a file or a URL) by
    the CLI, a server on it, and an operator's client to it."""
    from click.testing import CliRunner

    from medsettle.cli import main
    from medsettle.ledger.reference.loader import sample_document

    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(sample_document()))
    loaded = CliRunner().invoke(main, ["load-reference", "--db", db, str(reference)])
    assert loaded.exit_code == 0, loaded.output
    server = ServerThread(db, clock).start()  # type: ignore[arg-type]
    try:
        with SettlementClient(server.target, token=server.operator_token, tokens=server.tokens) as client:
            yield client
    finally:
        server.stop()


# ---- backends -------------------------------------------------------------
# `ledger_db` / `ledger_store`: a fresh, empty ledger on each backend, opened
# through the storage port (ledger/storage/port.py). A backend joins every
# test that uses them (tests/contract/ first) by adding a parameter here.
def _sqlite_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "contract.db")


def _postgres_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new database on the session's throwaway PostgreSQL server."""
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database()


# backend name -> a function giving a fresh, empty ledger's --db value
LEDGER_URLS: dict[str, Callable[[Path, pytest.FixtureRequest], str]] = {
    "sqlite": _sqlite_url,
    "postgres": _postgres_url,
}


@pytest.fixture(params=sorted(LEDGER_URLS))
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger's --db value (a file path or a URL)."""
    return LEDGER_URLS[request.param](tmp_path, request)


@pytest.fixture
def ledger_store(ledger_db: str) -> Iterator[LedgerStore]:
    store = open_ledger(ledger_db)
    yield store
    store.close()

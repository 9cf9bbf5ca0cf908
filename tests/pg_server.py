"""A throwaway PostgreSQL server for the tests, started from the binaries:
initdb into a temporary folder, listening on 127.0.0.1 at a free port and
on a Unix socket in that folder. fsync stays on (durability is what the
tests check); shared_buffers is small. Run as root, initdb and the server
run as the `postgres` user (PostgreSQL refuses root), in a folder it owns.

If PostgreSQL cannot be found or started, PostgresUnavailable says why: the
fixtures turn it into a test failure, never a skip (CI must prove this tier).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

PASSWORD_BYTES = 12
START_TIMEOUT_S = 60


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries, or the server would not start (the message says why)."""


def find_bindir() -> Path:
    """Where initdb, pg_ctl and postgres are: pg_config --bindir, Debian's
    /usr/lib/postgresql/<newest>/bin, or the PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                    if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates.extend(Path(p) for p in debian)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config, /usr/lib/postgresql/*/bin "
        "or PATH: run scripts/setup.sh --for-tests as root (it installs Debian's postgresql package) or install PostgreSQL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server in its own temporary folder; `url(dbname)` connects as the
    superuser `postgres` with a password over TCP."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="medsettle-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user = "postgres"
        self.password = secrets.token_hex(PASSWORD_BYTES)
        self._as_postgres = os.geteuid() == 0
        self._databases = itertools.count(1)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def init(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
                         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return self

    def start(self) -> PostgresServer:
        options = " ".join((
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}",
            "-c fsync=on", "-c synchronous_commit=on", "-c shared_buffers=32MB", "-c max_connections=200",
            "-c full_page_writes=on",
        ))
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                         "-t", str(START_TIMEOUT_S), "-o", options, "start")
        if done.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()} "
                                      f"{self.server_log()[-2000:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """mode: fast (clean), or immediate (as a crash: recovery on the next start)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "status").returncode == 0

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log.read_text("utf-8", "replace")
        except OSError:
            return ""

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{self.user}:{password or self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database (from template0); its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)


def start_server() -> PostgresServer:
    """A started server; PostgresUnavailable (with the server log) if it would not start."""
    server = PostgresServer()
    try:
        server.init().start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as error:
        log = server.server_log()
        server.destroy()
        if isinstance(error, PostgresUnavailable):
            raise
        raise PostgresUnavailable(f"{type(error).__name__}: {error} {log[-2000:]}") from error
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.running():
        if time.monotonic() > deadline:
            server.destroy()
            raise PostgresUnavailable("the server did not come up")
        time.sleep(0.05)
    return server


@contextlib.contextmanager
def throwaway_server() -> Iterator[PostgresServer]:
    """A new server for the caller, destroyed after. Never skipped: if it
    cannot start, the test fails and says why."""
    try:
        server = start_server()
    except PostgresUnavailable as error:
        pytest.fail(f"the PostgreSQL tier needs a PostgreSQL server: {error}", pytrace=False)
    yield server
    server.destroy()

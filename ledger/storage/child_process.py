"""A Python child process started with subprocess, for the writer process
(ledger/storage/writer_process.py): a fresh interpreter, as multiprocessing's
spawn gives, without spawn's second child, the resource tracker. That
tracker only cleans up named semaphores and shared memory, and the writer
uses neither (its pipes close with their processes), so it served nothing
and showed up in `ps` unexplained.

The same small interface as a multiprocessing context (Pipe, Process with
start, pid, is_alive, join, kill, exitcode). The target and its arguments
reach the child pickled over a pipe of their own; the arguments'
connections are passed as inherited file descriptors. The child's title
(`ps`, `top`) is the process name, e.g. `medsettle: writer`."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe as _pipe
from typing import Any, Callable, Sequence

_BOOT = "from medsettle.ledger.storage.child_process import _main; _main()"


@dataclass(frozen=True, slots=True)
class _InheritedConnection:
    """Stands, in the pickled arguments, for a connection the child inherits as a descriptor."""

    fd: int
    readable: bool
    writable: bool


class ChildProcess:
    """One child; `target(*args)` runs in it once started."""

    def __init__(self, target: Callable[..., Any], args: Sequence[Any] = (), name: str = "",
                 daemon: bool = True) -> None:
        self._target, self._args, self.name = target, tuple(args), name
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        inherited = [a for a in self._args if isinstance(a, Connection)]
        args = [_InheritedConnection(a.fileno(), a.readable, a.writable) if isinstance(a, Connection) else a
                for a in self._args]
        boot_read, boot_write = os.pipe()
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(boot_read)],
                pass_fds=[boot_read, *(c.fileno() for c in inherited)],
            )
        except BaseException:
            os.close(boot_write)
            raise
        finally:
            os.close(boot_read)
        with os.fdopen(boot_write, "wb") as boot:  # sys.path first: the target is unpickled with it in place
            pickle.dump(sys.path, boot)
            pickle.dump((self.name, self._target, args), boot)

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> None:
        if self.is_alive():
            assert self._popen is not None
            self._popen.kill()


class ChildProcesses:
    """Stands where a multiprocessing context would: Pipe() and Process()."""

    @staticmethod
    def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:  # noqa: N802  (multiprocessing's name)
        return _pipe(duplex)

    @staticmethod
    def Process(target: Callable[..., Any], args: Sequence[Any] = (), name: str = "",  # noqa: N802
                daemon: bool = True) -> ChildProcess:
        return ChildProcess(target, args, name, daemon)


def _main() -> None:
    """The child: read what to run, name the process, run it."""
    with os.fdopen(int(sys.argv[1]), "rb") as boot:
        sys.path[:] = pickle.load(boot)
        name, target, args = pickle.load(boot)
    if name:
        from setproctitle import setproctitle

        setproctitle(name)
    target(*(Connection(a.fd, a.readable, a.writable) if isinstance(a, _InheritedConnection) else a for a in args))

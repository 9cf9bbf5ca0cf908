"""fsync of a file or a directory by its path: a directory's fsync makes a
name created, renamed or removed in it durable."""

from __future__ import annotations

import os
from pathlib import Path


def sync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

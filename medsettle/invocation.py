"""How this medsettle was started, so that a command it prints for the user
(the demo's closing hint) can be pasted as is: `.venv/bin/medsettle` after
./scripts/run.sh, where `medsettle` alone is not on the PATH."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def this_command(argv0: str | None = None) -> str:
    """The words that start medsettle again, shell-quoted."""
    program = sys.argv[0] if argv0 is None else argv0
    if Path(program).name == "__main__.py":  # python -m medsettle
        return f"{shlex.quote(sys.executable)} -m medsettle"
    on_path = shutil.which("medsettle")
    if on_path and Path(on_path).resolve() == Path(program).resolve():
        return "medsettle"
    return shlex.quote(program)

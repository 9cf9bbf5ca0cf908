"""The compiled core: the settlement hot path's modules, compiled by Cython
from their plain Python sources when the package is installed with a C
compiler (setup.py), and the same files run interpreted otherwise.

MEDSETTLE_PURE=1 in the environment, read when medsettle is first imported,
makes every one of these modules load from its .py source even where its
compiled form exists (to compare the two, or to rule the compiled core out).
A compiled module older than its source (an edited checkout not rebuilt) is
not used either: its source is, with a warning. `active()` says which
modules run compiled.

This module imports nothing of medsettle: setup.py reads it before the
package is installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Sequence

# Chosen by profile (docs/performance.md, "Hot path"): the writer's work per settlement.
COMPILED_MODULES = (
    "medsettle.ledger.settlement.split",
    "medsettle.ledger.settlement.process",
    "medsettle.ledger.settlement.model",
    "medsettle.ledger.settlement.validation",
    "medsettle.ledger.settlement.internet_stage",
    "medsettle.ledger.settlement.quota",
    "medsettle.ledger.posting.rules",
    "medsettle.ledger.posting.accounts",
    "medsettle.ledger.posting.journal",
    "medsettle.ledger.storage.rows",
    "medsettle.ledger.money",
    "medsettle.server.convert",
    "medsettle.server.request_bytes",
    "medsettle.server.result_bytes",
    "medsettle.server.writes",
    "medsettle.server.wire",
)
PURE_ENV = "MEDSETTLE_PURE"
# A compiled module this much older than its source is taken for stale (an
# installed wheel writes both within moments of each other).
STALE_AFTER_S = 2.0


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def is_compiled(module: ModuleType) -> bool:
    return not str(getattr(module, "__file__", "") or "").endswith(".py")


def active() -> dict[str, bool]:
    """Each compiled-core module (imported now if it was not) -> whether it runs compiled."""
    return {name: is_compiled(importlib.import_module(name)) for name in COMPILED_MODULES}


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds a compiled-core module's .py source where its extension would be
    found first: always under MEDSETTLE_PURE, else only when the extension is stale."""

    def __init__(self, pure: bool) -> None:
        self._pure = pure

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for folder in path:
            source = Path(folder) / f"{leaf}.py"
            if not source.is_file():
                continue
            if not self._pure and not self._stale(Path(folder), leaf, source):
                return None  # the compiled module, found the usual way
            return importlib.util.spec_from_file_location(fullname, source)
        return None

    @staticmethod
    def _stale(folder: Path, leaf: str, source: Path) -> bool:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            extension = folder / f"{leaf}{suffix}"
            if extension.is_file():
                if source.stat().st_mtime - extension.stat().st_mtime > STALE_AFTER_S:
                    warnings.warn(f"{extension.name} is older than {source.name}: running {source.name} "
                                  "interpreted (rebuild: pip install -e .)", RuntimeWarning, stacklevel=2)
                    return True
                return False
        return False


def install_finder() -> None:
    """Called once by medsettle/__init__.py, before any compiled-core module is imported."""
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(pure_requested()))

"""Builds the compiled core (medsettle/compiled.py lists its modules) with
Cython from the plain .py sources, when Cython and a C compiler are there.
Without them, or if a module fails to compile, the package installs and
runs interpreted: the same sources, the same results. Everything else about
the package is in pyproject.toml."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
# Where each top-level import package's sources live (pyproject.toml, package-dir).
PACKAGE_DIRS = {"medsettle.ledger": "ledger", "medsettle.server": "server", "medsettle": "medsettle"}
COMPILER_DIRECTIVES = {
    "language_level": 3,
    # Annotations stay documentation: an `int` parameter still takes an IntEnum,
    # a `str` one a subclass, exactly as interpreted.
    "annotation_typing": False,
    "binding": True,  # functions keep their Python introspection (signature, __qualname__)
}


def _compiled_modules() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("_medsettle_compiled", HERE / "medsettle" / "compiled.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look modules up by name
    spec.loader.exec_module(module)
    return tuple(module.COMPILED_MODULES)


def _source_of(module: str) -> str:
    for package, folder in PACKAGE_DIRS.items():
        if module.startswith(package + "."):
            return str(Path(folder, *module[len(package) + 1:].split("."))) + ".py"
    raise ValueError(module)


def _cimport_root() -> str:
    """A folder where Cython finds each compiled module's .pxd under its
    package name (medsettle/ledger/settlement/model.pxd for
    `cython.cimports.medsettle.ledger.settlement.model`): the sources live
    in folders named otherwise (PACKAGE_DIRS), so it links to them."""
    root = HERE / "build" / "cimports"
    package = root / "medsettle"
    package.mkdir(parents=True, exist_ok=True)
    if not (package / "__init__.pxd").exists():  # created once: a newer one would rebuild its cimporters
        (package / "__init__.pxd").touch()
    for name, folder in PACKAGE_DIRS.items():
        if name.startswith("medsettle."):
            link = package / name.rpartition(".")[2]
            if link.is_symlink() and link.resolve() != (HERE / folder).resolve():
                link.unlink()  # a checkout moved since the last build
            if not link.is_symlink():
                link.symlink_to(HERE / folder, target_is_directory=True)
    return str(root)


def _extensions() -> list:
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("medsettle: Cython not found, installing the interpreted core only", file=sys.stderr)
        return []
    modules = [Extension(name, [_source_of(name)]) for name in _compiled_modules()]
    try:
        return cythonize(modules, compiler_directives=COMPILER_DIRECTIVES, include_path=[_cimport_root()], quiet=True)
    except Exception as error:  # noqa: BLE001 - any failure: interpreted, never no install
        print(f"medsettle: Cython failed ({error}), installing the interpreted core only", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """A module that does not compile (no C compiler, no Python headers) is left interpreted."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # noqa: BLE001
            print(f"medsettle: no compiled core ({error}); running interpreted", file=sys.stderr)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as error:  # noqa: BLE001
            print(f"medsettle: {ext.name} not compiled ({error}); it runs interpreted", file=sys.stderr)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})

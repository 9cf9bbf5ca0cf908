"""Every folder the installed package carries is a package pyproject.toml
names: setuptools warns, at every install, about a folder it could import
(a data folder such as the sample reference data or the migration steps)
but is not told of, and that page of warnings was the first thing a new
user's `./scripts/run.sh` printed."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
NOT_SHIPPED = {"__pycache__", "build"}


def folders_with_files(package: str, folder: Path) -> dict[str, Path]:
    """Dotted name -> folder, for the folder and each one below it holding a file."""
    found = {package: folder} if any(p.is_file() for p in folder.iterdir()) else {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name not in NOT_SHIPPED and not child.name.startswith("."):
            # A top-level package mapped to its own folder is checked on its own.
            if f"{package}.{child.name}" not in SETUPTOOLS["package-dir"]:
                found |= folders_with_files(f"{package}.{child.name}", child)
    return found


def test_every_shipped_folder_is_a_listed_package():
    listed = set(SETUPTOOLS["packages"])
    shipped: dict[str, Path] = {}
    for package, folder in SETUPTOOLS["package-dir"].items():
        shipped |= folders_with_files(package, ROOT / folder)
    assert "medsettle.ledger.reference.sample" in shipped  # the walk sees data folders
    missing = sorted(set(shipped) - listed)
    assert not missing, f"folders shipped but not listed in [tool.setuptools] packages: {missing}"


def test_every_package_data_pattern_matches_a_file_of_its_own_package():
    for package, patterns in SETUPTOOLS["package-data"].items():
        assert package in SETUPTOOLS["packages"], package
        folder = ROOT / SETUPTOOLS["package-dir"].get(package, "")
        if package not in SETUPTOOLS["package-dir"]:
            top = max((p for p in SETUPTOOLS["package-dir"] if package.startswith(p + ".")), key=len)
            folder = ROOT / SETUPTOOLS["package-dir"][top] / Path(*package[len(top) + 1:].split("."))
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches nothing in {folder.relative_to(ROOT)}"

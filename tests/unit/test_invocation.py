"""The program a printed command starts with is the one that was run."""

from __future__ import annotations

import sys

from medsettle.invocation import this_command


def test_a_program_off_the_path_is_named_by_the_path_it_was_run_by(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no medsettle on it
    assert this_command(".venv/bin/medsettle") == ".venv/bin/medsettle"
    assert this_command("/opt/my tools/medsettle") == "'/opt/my tools/medsettle'"


def test_the_program_on_the_path_is_named_alone(tmp_path, monkeypatch):
    program = tmp_path / "medsettle"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert this_command(str(program)) == "medsettle"


def test_python_dash_m_is_named_so():
    assert this_command("/somewhere/medsettle/__main__.py") == f"{sys.executable} -m medsettle"

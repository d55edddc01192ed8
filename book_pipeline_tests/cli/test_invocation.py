"""The name a run's log tells the user to type for `book-pipeline`: one that runs from the
folder the run was started in, whether or not the venv is active."""

import os
import sys
from pathlib import Path

import pytest

from book_pipeline.cli.invocation import COMMAND, book_pipeline_command

VENV_BIN = Path(sys.executable).parent
SCRIPT = VENV_BIN / COMMAND

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="the console script is installed beside the interpreter"
)


def test_the_bare_name_where_the_venv_is_active(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    assert book_pipeline_command() == COMMAND


def test_the_path_from_the_project_folder_where_the_venv_is_not_active(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(VENV_BIN.parent.parent)
    assert book_pipeline_command() == f"{VENV_BIN.parent.name}/bin/{COMMAND}"


def test_the_full_path_from_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert book_pipeline_command() == str(SCRIPT)


def test_another_installation_on_path_is_not_this_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / COMMAND
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert book_pipeline_command() == str(SCRIPT)

"""The project as a `dg` project: `dg check defs`, `dg list defs`, `dg launch`, each run from the
project root in its own process, with the project's venv active as the README has it."""

import json
import sys
from pathlib import Path

import pytest

from book_pipeline_tests.support.data_folder import point_count
from book_pipeline_tests.support.runs import run_project_command
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_MISMATCH_WARNING = "The active virtual environment does not match"


@pytest.fixture
def folders(books_dir: Path, data_dir: Path) -> dict[str, str]:
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    return {"BOOK_PIPELINE_BOOKS_DIR": str(books_dir), "BOOK_PIPELINE_DATA_DIR": str(data_dir)}


def run_dg(command: str, tmp_path: Path, environment: dict[str, str]) -> str:
    completed = run_project_command(
        command, tmp_path / "dagster_home", cwd=PROJECT_ROOT, environment=environment
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    if Path(sys.prefix).resolve() == (PROJECT_ROOT / ".venv").resolve():
        assert VENV_MISMATCH_WARNING not in completed.stdout
    return completed.stdout


def test_dg_check_defs(tmp_path: Path, folders: dict[str, str]) -> None:
    assert "All definitions loaded successfully" in run_dg("dg check defs", tmp_path, folders)


def test_dg_list_defs_shows_the_openai_kind_only_when_configured(
    tmp_path: Path, folders: dict[str, str]
) -> None:
    listed = run_dg(
        "dg list defs --json", tmp_path, {**folders, "BOOK_PIPELINE_EMBEDDER": "openai"}
    )
    [asset] = json.loads(listed[listed.index("{") :])["assets"]
    assert asset["asset_key"] == "book_embeddings"
    assert sorted(asset["kinds"]) == ["openai", "qdrant"]


def test_dg_launch_job_with_debug_log_level(
    tmp_path: Path, data_dir: Path, folders: dict[str, str]
) -> None:
    output = run_dg(
        "dg launch --job fetch_data", tmp_path, {**folders, "BOOK_PIPELINE_LOG_LEVEL": "DEBUG"}
    )
    assert point_count(data_dir) == 6
    # One setting away: Dagster's own DEBUG events are back.
    assert "- DEBUG - fetch_data -" in output
    assert "RUN_SUCCESS" in output


def test_dg_launch_assets_runs_in_process(
    tmp_path: Path, data_dir: Path, folders: dict[str, str]
) -> None:
    output = run_dg("dg launch --assets book_embeddings", tmp_path, folders)
    assert point_count(data_dir) == 6
    assert "Executing steps in process" in output

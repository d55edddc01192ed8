"""The fetch_data job and the book_embeddings asset as users start them from the command line,
each in its own process: `dagster job execute` and `dagster asset materialize`."""

import os
import subprocess
from pathlib import Path

from book_pipeline_tests.support.data_folder import point_count
from book_pipeline_tests.support.runs import dagster_job_execute, run_project_command
from book_pipeline_tests.support.synthetic_books import write_synthetic_books


def folders_environment(books_dir: Path, data_dir: Path) -> dict[str, str]:
    return {"BOOK_PIPELINE_BOOKS_DIR": str(books_dir), "BOOK_PIPELINE_DATA_DIR": str(data_dir)}


def test_dagster_job_execute_cli_logs_a_short_info_summary(
    books_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    dagster_home = tmp_path / "dagster_home"

    process = dagster_job_execute(
        dagster_home, cwd=tmp_path, environment=folders_environment(books_dir, data_dir)
    )
    output, _ = process.communicate(timeout=300)

    assert process.returncode == 0, output[-3000:]
    assert point_count(data_dir) == 6
    assert (dagster_home / "storage").is_dir()
    log_lines = [line for line in output.splitlines() if " - dagster - " in line]
    # INFO by default: the ops' own lines, not Dagster's three DEBUG events per step.
    assert not [line for line in log_lines if " - DEBUG - " in line]
    assert len(log_lines) <= 6, output
    assert f"loaded 6 book(s) from 3 file(s) into the Qdrant collection 'books' at {data_dir}" in (
        output
    )
    assert 'book-pipeline search "' in log_lines[-2] + log_lines[-1]
    # The hint runs as shown, pasted into the shell the run was started from (the venv not
    # active: this process's PATH need not hold its bin folder).
    [hint] = [line.split("search them: ", 1)[1] for line in log_lines if "search them: " in line]
    search = subprocess.run(
        ["bash", "-c", hint],
        cwd=tmp_path,
        env={**os.environ, **folders_environment(books_dir, data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert search.returncode == 0, search.stderr
    assert search.stdout.splitlines()[0].startswith("rank  score  title")
    assert len(search.stdout.splitlines()) == 2 + 5, search.stdout


def test_dagster_asset_materialize_runs_its_steps_in_process(
    books_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The implicit asset job (also the UI's Materialize) takes the Definitions' executor."""
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    completed = run_project_command(
        "dagster asset materialize --select book_embeddings -m book_pipeline.definitions",
        tmp_path / "dagster_home",
        cwd=tmp_path,
        environment=folders_environment(books_dir, data_dir),
    )

    output = completed.stdout
    assert completed.returncode == 0, output[-3000:]
    assert "Executing steps in process" in output
    assert "multiprocess" not in output
    assert point_count(data_dir) == 6

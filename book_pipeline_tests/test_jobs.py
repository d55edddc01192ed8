"""The fetch_data job as users start it: `dagster job execute` in its own process."""

import os
import subprocess
import sys
from pathlib import Path

from book_pipeline.synthetic_books import write_synthetic_books
from book_pipeline_tests.conftest import point_count

DAGSTER = Path(sys.executable).parent / "dagster"


def test_dagster_job_execute_cli(books_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
    }

    completed = subprocess.run(
        [str(DAGSTER), "job", "execute", "-m", "book_pipeline.definitions", "-j", "fetch_data"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RUN_SUCCESS" in completed.stderr + completed.stdout
    assert point_count(data_dir) == 6
    assert (dagster_home / "storage").is_dir()

"""The fetch_data job as users start it: `dagster job execute` in its own process."""

from pathlib import Path

from book_pipeline.synthetic_books import write_synthetic_books
from book_pipeline_tests.conftest import dagster_job_execute, point_count


def test_dagster_job_execute_cli(books_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    dagster_home = tmp_path / "dagster_home"

    process = dagster_job_execute(
        dagster_home,
        cwd=tmp_path,
        environment={
            "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
            "BOOK_PIPELINE_DATA_DIR": str(data_dir),
        },
    )
    output, _ = process.communicate(timeout=300)

    assert process.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    assert point_count(data_dir) == 6
    assert (dagster_home / "storage").is_dir()

"""Faults the pipeline must survive without losing or duplicating a book.

The embedding endpoint is the loopback OpenAI-compatible server, so that thousands of books embed
in a moment. A kill lands exactly where it is aimed: the run is started with a fail point armed
(`book_pipeline.core.runtime.fail_points`), and the process kills itself there with SIGKILL,
whatever the machine's speed.
"""

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from book_pipeline.core.ingest.ledger import FileState
from book_pipeline.core.runtime.fail_points import AFTER_FIRST_BATCH, BEFORE_RECORDING_THE_LOAD
from book_pipeline.core.settings import VARIABLES
from book_pipeline_tests.support.data_folder import point_count, qdrant_in, recorded_entries
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.runs import dagster_job_execute
from book_pipeline_tests.support.small_filesystems import LoopExt4, mounted_ext4
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

LOAD_STEP = "book_embeddings.load_embeddings_to_vector_db"


@pytest.fixture
def embedding_endpoint() -> Iterator[str]:
    with embeddings_server(EmbeddingsServerState(dimensions=64)) as base_url:
        yield base_url


def pipeline_environment(books_dir: Path, data_dir: Path, base_url: str) -> dict[str, str]:
    return {
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
        "BOOK_PIPELINE_EMBEDDER": "openai",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "sk-test",
    }


def assert_exactly_one_point_per_book(data_dir: Path, books: int) -> None:
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(books + 100)
    identities = [(p.payload["source_file"], p.payload["book_index"]) for p in points]
    assert len(identities) == books
    assert len(set(identities)) == books


def loaded_files(data_dir: Path) -> dict[str, int]:
    return {
        name: entry.books
        for name, entry in recorded_entries(data_dir).items()
        if entry.state is FileState.LOADED
    }


def killed_at(fail_point: str, dagster_home: Path, cwd: Path, environment: dict[str, str]) -> str:
    """Run fetch_data with the fail point armed; it must die there, by SIGKILL."""
    killed = dagster_job_execute(
        dagster_home, cwd, {**environment, VARIABLES.fail_point.name: fail_point}
    )
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    return output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fail_point", "points_left"),
    [(AFTER_FIRST_BATCH, 200), (BEFORE_RECORDING_THE_LOAD, 4000)],
    ids=["during-the-load", "between-the-points-and-the-record"],
)
def test_a_kill_in_the_load_then_a_rerun_leaves_exactly_the_books_and_the_record(
    tmp_path: Path,
    books_dir: Path,
    data_dir: Path,
    embedding_endpoint: str,
    fail_point: str,
    points_left: int,
) -> None:
    write_synthetic_books(books_dir, files=20, books_per_file=200)
    environment = pipeline_environment(books_dir, data_dir, embedding_endpoint)
    dagster_home = tmp_path / "dagster_home"

    killed_at(fail_point, dagster_home, tmp_path, environment)

    # The store has the points written before the kill, the record none of them.
    assert point_count(data_dir) == points_left
    assert loaded_files(data_dir) == {}

    rerun = dagster_job_execute(dagster_home, tmp_path, environment)
    output, _ = rerun.communicate(timeout=300)

    assert rerun.returncode == 0, output[-3000:]
    assert_exactly_one_point_per_book(data_dir, books=4000)
    assert loaded_files(data_dir) == {path.name: 200 for path in books_dir.iterdir()}


@pytest.mark.slow
def test_two_loads_at_once_wait_for_each_other_and_duplicate_nothing(
    tmp_path: Path, books_dir: Path, data_dir: Path, embedding_endpoint: str
) -> None:
    write_synthetic_books(books_dir, files=10, books_per_file=100)
    environment = pipeline_environment(books_dir, data_dir, embedding_endpoint)

    runs = [
        dagster_job_execute(tmp_path / f"dagster_home_{number}", tmp_path, environment)
        for number in (1, 2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
    assert_exactly_one_point_per_book(data_dir, books=1000)
    assert point_count(data_dir) == 1000


@pytest.fixture
def small_ext4(tmp_path: Path) -> Iterator[LoopExt4]:
    """A 24 MB ext4 filesystem on a loop device, as the issue's full disk was."""
    with mounted_ext4(tmp_path / "data.img", tmp_path / "small", "24M") as filesystem:
        yield filesystem


@pytest.mark.slow
@pytest.mark.xdist_group("loop_devices")
def test_a_full_disk_fails_the_load_cleanly_and_a_run_after_it_grows_loads_every_book(
    tmp_path: Path, books_dir: Path, small_ext4: LoopExt4
) -> None:
    # 384-d as the default model's: 4,000 such points do not fit in 24 MB.
    write_synthetic_books(books_dir, files=40, books_per_file=100)
    data_dir = small_ext4.mount_point / "data"
    dagster_home = tmp_path / "dagster_home"
    with embeddings_server(EmbeddingsServerState(dimensions=384)) as base_url:
        environment = pipeline_environment(books_dir, data_dir, base_url)

        full = dagster_job_execute(dagster_home, tmp_path, environment)
        output, _ = full.communicate(timeout=300)

        # An error, not a SIGBUS (-7), and not retried: freeing space is what helps.
        assert full.returncode == 1, output[-3000:]
        store = data_dir / "qdrant-edge" / "books"
        assert f"not enough free space for the embedded Qdrant store in {store}: " in output
        assert re.search(
            r"[\d,]+ bytes \([\d.]+ [MG]iB\) free, [\d,]+ bytes \([\d.]+ [MG]iB\) needed", output
        )
        assert "STEP_UP_FOR_RETRY" not in output

        small_ext4.grow("128M")
        rerun = dagster_job_execute(dagster_home, tmp_path, environment)
        output, _ = rerun.communicate(timeout=300)

    assert rerun.returncode == 0, output[-3000:]
    assert_exactly_one_point_per_book(data_dir, books=4000)
    assert loaded_files(data_dir) == {path.name: 100 for path in books_dir.iterdir()}

"""Faults the pipeline must survive without losing or duplicating a book.

The embedding endpoint is the loopback OpenAI-compatible server, so that thousands of books embed
in a moment and the faults land where they are aimed: in the load.
"""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from book_pipeline.core.synthetic_books import write_synthetic_books
from book_pipeline.defs.resources import PipelineStateResource
from book_pipeline_tests.conftest import dagster_job_execute, point_count, qdrant_in
from book_pipeline_tests.openai_compatible_server import EmbeddingsServerState, embeddings_server

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
        # wait_for_the_load_to_start watches for Dagster's step events, DEBUG on the console.
        "BOOK_PIPELINE_LOG_LEVEL": "DEBUG",
    }


def wait_for_the_load_to_start(process: subprocess.Popen) -> None:
    """Read the run's own log as it streams; the instance is not opened while it is created."""
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if f"{LOAD_STEP} - STEP_START" in line:
            return
    raise AssertionError("the run ended before its load started:\n" + "".join(seen[-40:]))


def assert_exactly_one_point_per_book(data_dir: Path, books: int) -> None:
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(books + 100)
    identities = [(p.payload["source_file"], p.payload["book_index"]) for p in points]
    assert len(identities) == books
    assert len(set(identities)) == books


def test_sigkill_during_the_load_then_a_rerun_leaves_exactly_the_books(
    tmp_path: Path, books_dir: Path, data_dir: Path, embedding_endpoint: str
) -> None:
    write_synthetic_books(books_dir, files=20, books_per_file=200)
    environment = pipeline_environment(books_dir, data_dir, embedding_endpoint)
    dagster_home = tmp_path / "dagster_home"

    killed = dagster_job_execute(dagster_home, tmp_path, environment)
    wait_for_the_load_to_start(killed)
    time.sleep(0.5)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    # Killed before the load recorded anything: the next run must redo the whole load.
    assert PipelineStateResource(data_dir=str(data_dir)).ledger().entries() == {}

    rerun = dagster_job_execute(dagster_home, tmp_path, environment)
    output, _ = rerun.communicate(timeout=300)

    assert rerun.returncode == 0, output[-3000:]
    assert_exactly_one_point_per_book(data_dir, books=4000)


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

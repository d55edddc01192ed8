"""Fixtures only; what tests share besides them is in `book_pipeline_tests.support`."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline_tests.support.environment import TEST_ENVIRONMENT, outside_variables
from book_pipeline_tests.support.runs import SampleLoad, fetch_data_job, fetch_data_run_config
from book_pipeline_tests.support.services import missing_redis, redis_server


@pytest.fixture(autouse=True)
def no_outside_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without the shell's project, Qdrant and OpenAI variables (nor those an
    earlier test left), with the tests' own: support/environment.py says why."""
    for name in outside_variables(os.environ):
        monkeypatch.delenv(name)
    for name, value in TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def books_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "books"
    folder.mkdir()
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real, persistent (sqlite) instance in a temporary DAGSTER_HOME."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def sample_load(tmp_path_factory: pytest.TempPathFactory) -> SampleLoad:
    """fetch_data on the bundled sample books, once: the tests using it only read the store."""
    data_dir = tmp_path_factory.mktemp("sample_load") / "data"
    result = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(SAMPLE_BOOKS_DIR, data_dir)
    )
    assert result.success
    return SampleLoad(data_dir, result)


@pytest.fixture
def edge_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's configured store: the embedded one in `data_dir`."""
    for name in ("QDRANT_URL", "BOOK_PIPELINE_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis server of its own (a Celery broker); skips, naming what is missing, without one."""
    reason = missing_redis()
    if reason is not None:
        pytest.skip(reason)
    with redis_server() as url:
        yield url

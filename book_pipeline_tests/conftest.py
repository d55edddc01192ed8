"""Fixtures, and how the suite runs in parallel; what tests share besides fixtures is in
`book_pipeline_tests.support`.

`pytest` runs the tests in 4 worker processes (pytest-xdist; `-n 4 --dist loadgroup` in
pyproject.toml's addopts; `-n 0` runs them in this process, one after another). Any test may run
at the same time as any other, so a test
- keeps everything it writes under its own `tmp_path` (books, data, DAGSTER_HOME: a daemon,
  `dagster dev` or `dagster job execute` gets `DAGSTER_HOME=tmp_path / ...`), never in the
  checkout or a fixed folder;
- listens only on a port from `support.services.free_port()`, and starts and stops (by PID) its
  own daemons, servers and browsers: such a test needs no group.

Tests that must not run at the same time, or that share a set-up, carry the same
`pytest.mark.xdist_group(NAME)`; one worker runs a group's tests one after another:
- `pytestmark = pytest.mark.xdist_group(__name__)` at the top of a module whose tests share a
  module-scoped fixture, which then runs once, not once per worker (test_bad_input, test_alerts,
  test_deploy). A session-scoped fixture (`sample_load`) runs once per worker that uses it.
- `"loop_devices"`: every test that attaches a loop device
  (`support.small_filesystems.mounted_ext4`): two `losetup -f` at once may pick the same device.
- `"project_checkout"`: the tests that write into the checkout (Hypothesis's `.hypothesis/`) and
  the one that checks `git status` is unchanged.

A test that takes more than about 10 s (a daemon, a `dagster` subprocess over thousands of books,
a browser) is marked `@pytest.mark.slow`: slow tests are started first, so that the workers
finish together instead of waiting for one that drew a long test last.

Under CI (`CI=true`, as CI runs `.ci/run`) a skipped test fails (`support/ci_skips.py`).
"""

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


pytest_plugins = ["book_pipeline_tests.support.ci_skips"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: otherwise in the order collected)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
    """fetch_data on the bundled sample books, once per worker: the tests using it only read the
    store."""
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

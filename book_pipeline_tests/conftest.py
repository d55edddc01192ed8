from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from book_pipeline.definitions import defs
from book_pipeline.resources import QdrantResource


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


def fetch_data_run_config(books_dir: Path, data_dir: Path, **embedder: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "books_folder": {"config": {"path": str(books_dir)}},
        "qdrant": {"config": {"data_dir": str(data_dir)}},
    }
    if embedder:
        resources["embedder"] = {"config": embedder}
    return {"resources": resources}


def fetch_data_job() -> dg.JobDefinition:
    return defs.resolve_job_def("fetch_data")


def point_count(data_dir: Path) -> int:
    with QdrantResource(data_dir=str(data_dir)).open() as store:
        return store.count()


def steps_that_ran(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """Step keys of the run by outcome: 'success' and 'failure'."""
    outcomes: dict[str, set[str]] = {"success": set(), "failure": set()}
    for event_type, outcome in (
        (dg.DagsterEventType.STEP_SUCCESS, "success"),
        (dg.DagsterEventType.STEP_FAILURE, "failure"),
    ):
        for entry in instance.all_logs(run_id, of_type=event_type):
            assert entry.dagster_event is not None
            outcomes[outcome].add(entry.dagster_event.step_key.removeprefix("book_embeddings."))
    return outcomes

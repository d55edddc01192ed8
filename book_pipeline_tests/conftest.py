import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from book_pipeline.core.embedding import LOCAL_MODEL_NAME, shared_local_embedder
from book_pipeline.core.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.ledger import LedgerEntry, LoadLedger
from book_pipeline.core.parsing import parse_book_file
from book_pipeline.core.settings import DEFAULT_COLLECTION, EDGE_FOLDER_NAME, LEDGER_FILE_NAME
from book_pipeline.core.vector_store import read_collection_stamp
from book_pipeline.definitions import defs
from book_pipeline.defs.resources import QdrantResource, embedded_store_paths, folders_run_config


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
    resources = folders_run_config(books_dir, data_dir)
    if embedder:
        resources["embedder"]["config"].update(embedder)
    return {"resources": resources}


def openai_run_config(
    books_dir: Path, data_dir: Path, base_url: str, **embedder: Any
) -> dict[str, Any]:
    """`fetch_data_run_config` embedding through an OpenAI-compatible server at `base_url`."""
    return fetch_data_run_config(
        books_dir,
        data_dir,
        provider="openai",
        openai_base_url=base_url,
        openai_api_key="sk-test",
        **embedder,
    )


def fetch_data_job() -> dg.JobDefinition:
    return defs.resolve_job_def("fetch_data")


def qdrant_in(data_dir: Path) -> QdrantResource:
    """The embedded store a run with `fetch_data_run_config(..., data_dir)` writes to."""
    return QdrantResource(**embedded_store_paths(data_dir))


def ledger_in(data_dir: Path) -> LoadLedger:
    return LoadLedger(data_dir / LEDGER_FILE_NAME)


def recorded_entries(data_dir: Path) -> dict[str, LedgerEntry]:
    """What the ledger records for the data folder's embedded collection as it is now."""
    stamp = read_collection_stamp(DEFAULT_COLLECTION, data_dir / EDGE_FOLDER_NAME)
    return ledger_in(data_dir).entries(stamp)


def record_as_loaded(data_dir: Path, paths: list[Path]) -> None:
    """The ledger records the files as loaded into the data folder's embedded collection
    (created, real and empty, for the bundled model): what a sensor tick reads, without a run."""
    with qdrant_in(data_dir).open() as store:
        store.ensure_collection(384, LOCAL_MODEL_NAME)
        stamp = store.stamp()
        assert stamp is not None
        generation = store.record_load(stamp.load_sequence + 1)
        ledger_in(data_dir).record_loaded(
            (parse_book_file(path) for path in paths), generation, stamp.load_sequence + 1
        )


def point_count(data_dir: Path) -> int:
    with qdrant_in(data_dir).open() as store:
        return store.count()


def steps_that_ran(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """The run's steps of the book_embeddings graph, by outcome: 'success', 'failure' and
    'skipped' (a step whose input was not produced, e.g. a refused file's embed step)."""
    outcomes: dict[str, set[str]] = {"success": set(), "failure": set(), "skipped": set()}
    for event_type, outcome in (
        (dg.DagsterEventType.STEP_SUCCESS, "success"),
        (dg.DagsterEventType.STEP_FAILURE, "failure"),
        (dg.DagsterEventType.STEP_SKIPPED, "skipped"),
    ):
        for entry in instance.all_logs(run_id, of_type=event_type):
            assert entry.dagster_event is not None
            step_key = entry.dagster_event.step_key
            if step_key.startswith("book_embeddings."):
                outcomes[outcome].add(step_key.removeprefix("book_embeddings."))
    return outcomes


@dataclass(frozen=True)
class SampleLoad:
    data_dir: Path
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="session")
def sample_load(tmp_path_factory: pytest.TempPathFactory) -> SampleLoad:
    """fetch_data on the bundled sample books, once: the tests using it only read the store."""
    data_dir = tmp_path_factory.mktemp("sample_load") / "data"
    result = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(SAMPLE_BOOKS_DIR, data_dir)
    )
    assert result.success
    return SampleLoad(data_dir, result)


HOLD_STORE = """
import sys, time
from pathlib import Path
from book_pipeline.core.vector_store import open_vector_store
with open_vector_store("books", Path(sys.argv[1])):
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_store_open(path: Path, seconds: float) -> subprocess.Popen:
    """Another process with the embedded store open, as a running load has it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


def unit_vectors(count: int, dimension: int, seed: int = 0) -> np.ndarray:
    """Random directions: vectors that say nothing about the books they are stored for."""
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def dagster_job_execute(
    dagster_home: Path, cwd: Path, environment: dict[str, str], job: str = "fetch_data"
) -> subprocess.Popen:
    """`dagster job execute` in its own process (and process group), as a user would run it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            *("job", "execute", "-m", "book_pipeline.definitions", "-j", job),
        ],
        env={**os.environ, "DAGSTER_HOME": str(dagster_home), **environment},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_project_command(
    command: str, dagster_home: Path, cwd: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A command line of this venv (`dagster ...`, `dg ...`) run to completion as a user would,
    with the venv active (as `dg` expects) and its own instance; stdout and stderr together."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    executable, *arguments = shlex.split(command)
    return subprocess.run(
        [str(venv_bin / executable), *arguments],
        env={
            **os.environ,
            "VIRTUAL_ENV": str(venv_bin.parent),
            "DAGSTER_HOME": str(dagster_home),
            **environment,
        },
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


class CountingEmbedder:
    """The real local model, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self._model = shared_local_embedder()
        self.model_name = self._model.model_name
        self.dimension = self._model.dimension
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self._model.embed(texts)

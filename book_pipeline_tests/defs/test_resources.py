"""Resources built from the environment, as the code location builds them and a run sees them."""

from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.settings import CollectionSettings
from book_pipeline.defs.resources import BooksFolder, resources_from_environment


def resources_outside_dagster() -> dict[str, dg.ConfigurableResource]:
    """As a run sees them: every `EnvVar` field holds the variable's value, not its name."""
    resources = {}
    for name, resource in resources_from_environment().items():
        # The context manager form: the pipeline state's teardown ends a run's lease.
        with resource.process_config_and_initialize_cm() as initialized:
            resources[name] = initialized
    return resources


def test_defaults_without_any_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "BOOK_PIPELINE_BOOKS_DIR",
        "BOOK_PIPELINE_DATA_DIR",
        "BOOK_PIPELINE_COLLECTION",
        "BOOK_PIPELINE_EMBEDDER",
        "BOOK_PIPELINE_EMBEDDING_MODEL",
        "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS",
        "QDRANT_URL",
        "QDRANT_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)

    resources = resources_outside_dagster()

    assert resources["books_folder"].path is None
    assert resources["books_folder"].folder == SAMPLE_BOOKS_DIR
    assert resources["embedder"].provider == "local"
    assert Path(resources["embedder"].model_cache_dir) == Path("data") / "models"
    assert resources["qdrant"].url is None
    assert resources["qdrant"].collection == "books"
    assert Path(resources["qdrant"].local_path) == Path("data") / "qdrant-edge"
    assert Path(resources["qdrant"].legacy_path) == Path("data") / "qdrant"
    assert resources["pipeline_state"].data_dir == "data"
    assert resources["pipeline_state"].dead_run_grace_seconds == 60


def test_every_variable_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    variables = {
        "BOOK_PIPELINE_BOOKS_DIR": str(tmp_path / "books"),
        "BOOK_PIPELINE_DATA_DIR": str(tmp_path / "state"),
        "BOOK_PIPELINE_COLLECTION": "books_test",
        "BOOK_PIPELINE_EMBEDDER": "openai",
        "BOOK_PIPELINE_EMBEDDING_MODEL": "text-embedding-3-large",
        "BOOK_PIPELINE_SETTLE_SECONDS": "7",
        "BOOK_PIPELINE_MAX_FILES_PER_RUN": "9",
        "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS": "45",
        "QDRANT_URL": "http://127.0.0.1:6333",
        "QDRANT_API_KEY": "qdrant-secret",
        "OPENAI_API_KEY": "sk-secret",
        "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    resources = resources_outside_dagster()

    books_folder, embedder = resources["books_folder"], resources["embedder"]
    qdrant, state = resources["qdrant"], resources["pipeline_state"]
    assert (books_folder.path, books_folder.settle_seconds, books_folder.max_files_per_run) == (
        variables["BOOK_PIPELINE_BOOKS_DIR"],
        7,
        9,
    )
    assert (embedder.provider, embedder.model) == ("openai", "text-embedding-3-large")
    assert (embedder.openai_api_key, embedder.openai_base_url) == (
        "sk-secret",
        "http://127.0.0.1:8000/v1",
    )
    assert (qdrant.url, qdrant.api_key, qdrant.collection) == (
        "http://127.0.0.1:6333",
        "qdrant-secret",
        "books_test",
    )
    assert qdrant.local_path == str(tmp_path / "state" / "qdrant-edge")
    assert qdrant.legacy_path == str(tmp_path / "state" / "qdrant")
    assert state.data_dir == variables["BOOK_PIPELINE_DATA_DIR"]
    assert state.dead_run_grace_seconds == 45
    assert embedder.model_cache_dir == str(tmp_path / "state" / "models")


def test_an_unknown_embedder_is_refused_when_the_code_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOOK_PIPELINE_EMBEDDER", "word2vec")
    with pytest.raises(ValueError, match="'local' or 'openai'"):
        resources_outside_dagster()


# Every collection layout variable, with a value that is not its default.
COLLECTION_LAYOUT_VARIABLES = {
    "QDRANT_SHARD_NUMBER": "6",
    "QDRANT_REPLICATION_FACTOR": "2",
    "QDRANT_WRITE_CONSISTENCY_FACTOR": "1",
    "QDRANT_ON_DISK_VECTORS": "true",
    "QDRANT_ON_DISK_PAYLOAD": "0",
    "QDRANT_HNSW_M": "32",
    "QDRANT_HNSW_EF_CONSTRUCT": "200",
    "QDRANT_INT8_QUANTIZATION": "yes",
}


def test_qdrant_collection_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in COLLECTION_LAYOUT_VARIABLES.items():
        monkeypatch.setenv(name, value)

    settings = resources_outside_dagster()["qdrant"].collection_settings

    assert settings == CollectionSettings(
        shard_number=6,
        replication_factor=2,
        write_consistency_factor=1,
        on_disk_vectors=True,
        on_disk_payload=False,
        hnsw_m=32,
        hnsw_ef_construct=200,
        int8_quantization=True,
    )


def test_qdrant_collection_settings_default_to_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in COLLECTION_LAYOUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    assert resources_outside_dagster()["qdrant"].collection_settings == CollectionSettings()


def test_a_boolean_variable_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_ON_DISK_VECTORS", "maybe")
    with pytest.raises(ValueError, match="QDRANT_ON_DISK_VECTORS must be one of"):
        resources_outside_dagster()


def test_the_default_books_folder_is_decided_at_each_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A sensor or code server started before `./books` existed reads it once it does."""
    monkeypatch.chdir(tmp_path)
    books_folder = BooksFolder()
    assert books_folder.folder == SAMPLE_BOOKS_DIR

    (tmp_path / "books").mkdir()

    assert books_folder.folder == tmp_path.resolve() / "books"
    assert BooksFolder(path=str(tmp_path / "elsewhere")).folder == tmp_path.resolve() / "elsewhere"

"""The configuration read from the environment, as the CLI uses it and the resources wrap it."""

from pathlib import Path

import pytest

from book_pipeline.core.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.settings import CollectionSettings, Settings, SettingsError


def test_defaults_without_any_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_environment({})

    assert settings == Settings()
    assert settings.books_folder == SAMPLE_BOOKS_DIR
    assert settings.embedder == "local" and settings.embedding_model is None
    assert (settings.collection, settings.qdrant_url) == ("books", None)
    assert settings.edge_path == Path("data") / "qdrant-edge"
    assert settings.legacy_path == Path("data") / "qdrant"
    assert settings.model_cache_dir == Path("data") / "models"
    assert settings.ledger_path == tmp_path.resolve() / "data" / "ledger.sqlite"
    assert settings.max_file_bytes == 50 * 1024 * 1024
    assert settings.collection_settings == CollectionSettings()


def test_every_variable_is_used(tmp_path: Path) -> None:
    settings = Settings.from_environment(
        {
            "BOOK_PIPELINE_BOOKS_DIR": str(tmp_path / "books"),
            "BOOK_PIPELINE_DATA_DIR": str(tmp_path / "state"),
            "BOOK_PIPELINE_COLLECTION": "books_test",
            "BOOK_PIPELINE_EMBEDDER": "openai",
            "BOOK_PIPELINE_EMBEDDING_MODEL": "text-embedding-3-large",
            "BOOK_PIPELINE_SETTLE_SECONDS": "7",
            "BOOK_PIPELINE_MAX_FILES_PER_RUN": "9",
            "BOOK_PIPELINE_MAX_FILE_MB": "3",
            "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS": "45",
            "QDRANT_URL": "http://127.0.0.1:6333",
            "QDRANT_API_KEY": "qdrant-secret",
            "OPENAI_API_KEY": "sk-secret",
            "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
            "QDRANT_SHARD_NUMBER": "6",
            "QDRANT_ON_DISK_VECTORS": "true",
            "QDRANT_ON_DISK_PAYLOAD": "0",
        }
    )

    assert settings.books_folder == tmp_path.resolve() / "books"
    assert settings.edge_path == tmp_path / "state" / "qdrant-edge"
    assert (settings.settle_seconds, settings.max_files_per_run, settings.max_file_mb) == (7, 9, 3)
    assert settings.dead_run_grace_seconds == 45
    assert (settings.embedder, settings.embedding_model) == ("openai", "text-embedding-3-large")
    assert (settings.openai_api_key, settings.openai_base_url) == (
        "sk-secret",
        "http://127.0.0.1:8000/v1",
    )
    assert (settings.collection, settings.qdrant_url, settings.qdrant_api_key) == (
        "books_test",
        "http://127.0.0.1:6333",
        "qdrant-secret",
    )
    assert settings.collection_settings == CollectionSettings(
        shard_number=6, on_disk_vectors=True, on_disk_payload=False
    )
    # A printed or logged Settings never shows a secret.
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BOOK_PIPELINE_EMBEDDER", "word2vec", "'local' or 'openai', got 'word2vec'"),
        ("BOOK_PIPELINE_SETTLE_SECONDS", "soon", "must be a whole number, got 'soon'"),
        ("QDRANT_HNSW_M", "16.5", "must be a whole number, got '16.5'"),
        ("QDRANT_INT8_QUANTIZATION", "maybe", "must be one of 1, true, yes, on, 0, false"),
    ],
)
def test_an_unusable_value_is_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} ") as refused:
        Settings.from_environment({variable: value})
    assert message in str(refused.value)

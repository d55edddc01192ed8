"""The configuration read from the environment, as the CLI uses it and the resources wrap it."""

from dataclasses import fields
from pathlib import Path

import pytest

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.settings import (
    VARIABLES,
    CollectionSettings,
    Settings,
    SettingsError,
    variable_reference,
)

ROOT = Path(__file__).resolve().parents[2]


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
            "BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK": "0.015",
            "BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN": "50000",
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
    assert settings.embedding_price_per_mtok == 0.015
    assert settings.max_embedding_tokens_per_run == 50000
    # A printed or logged Settings never shows a secret.
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BOOK_PIPELINE_EMBEDDER", "word2vec", "'local' or 'openai', got 'word2vec'"),
        ("BOOK_PIPELINE_SETTLE_SECONDS", "soon", "must be a whole number, got 'soon'"),
        ("QDRANT_HNSW_M", "16.5", "must be a whole number, got '16.5'"),
        ("QDRANT_INT8_QUANTIZATION", "maybe", "must be one of 1, true, yes, on, 0, false"),
        ("BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK", "$0.02", "a number of at least 0, got '$0.02'"),
        ("BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK", "-1", "a number of at least 0, got '-1'"),
        ("BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN", "1e6", "must be a whole number"),
        ("BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN", "-5", "a whole number of at least 0"),
    ],
)
def test_an_unusable_value_is_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} ") as refused:
        Settings.from_environment({variable: value})
    assert message in str(refused.value)


def test_no_secret_shows_in_a_printed_settings() -> None:
    secrets = {
        variable.name: f"planted-{variable.name}" for variable in VARIABLES if variable.secret
    }
    assert "QDRANT_API_KEY" in secrets and "BOOK_PIPELINE_ALERT_SMTP_PASSWORD" in secrets

    printed = repr(Settings.from_environment(secrets))

    assert "planted-" not in printed
    assert "collection='books'" in printed


def test_every_row_of_the_table_is_a_setting_and_every_setting_a_row() -> None:
    """A new variable is a row of `Variables` and a field of `Settings` of the same name."""
    rows = {attribute for attribute, _ in VARIABLES.items()}
    not_variables = {"collection_settings", "lock_wait_seconds"}
    settings = {field.name for field in fields(Settings)} - not_variables
    layout = {field.name for field in fields(CollectionSettings)}

    assert rows == settings | layout


def test_every_variable_has_a_name_and_a_description_of_its_own() -> None:
    names = [variable.name for variable in VARIABLES]
    assert len(names) == len(set(names))
    assert all(variable.description for variable in VARIABLES)


def test_docs_configuration_is_the_table() -> None:
    """docs/configuration.md's table is `variable_reference()`; `python -m
    book_pipeline.core.settings` prints it after a change to the table."""
    document = (ROOT / "docs" / "configuration.md").read_text()
    table = "".join(line for line in document.splitlines(keepends=True) if line.startswith("|"))

    assert table == variable_reference()

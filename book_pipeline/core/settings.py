"""The project's configuration, read once from the environment: which folders, which embedding
model, which Qdrant, and how a new collection is laid out.

The Dagster resources (`book_pipeline.defs.resources`) wrap these values, and the
`book-pipeline` command uses them directly, so both read every variable the same way. Only
standard-library imports here: the CLI's `status` reads its configuration without paying for
numpy, Qdrant or Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from book_pipeline.core.book_files import BYTES_PER_MB, DEFAULT_MAX_FILE_MB, MAX_FILE_MB_VARIABLE
from book_pipeline.core.folders import BOOKS_DIR_ENV, DEFAULT_DATA_DIR, default_books_dir

DATA_DIR_ENV = "BOOK_PIPELINE_DATA_DIR"
SETTLE_SECONDS_ENV = "BOOK_PIPELINE_SETTLE_SECONDS"
MAX_FILES_PER_RUN_ENV = "BOOK_PIPELINE_MAX_FILES_PER_RUN"
EMBEDDER_ENV = "BOOK_PIPELINE_EMBEDDER"
EMBEDDING_MODEL_ENV = "BOOK_PIPELINE_EMBEDDING_MODEL"
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
COLLECTION_ENV = "BOOK_PIPELINE_COLLECTION"
QDRANT_URL_ENV = "QDRANT_URL"
QDRANT_API_KEY_ENV = "QDRANT_API_KEY"
DEAD_RUN_GRACE_SECONDS_ENV = "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS"

EMBEDDER_PROVIDERS = ("local", "openai")
DEFAULT_COLLECTION = "books"
DEFAULT_SETTLE_SECONDS = 30
DEFAULT_MAX_FILES_PER_RUN = 100
DEFAULT_OPENAI_MAX_RETRIES = 2
DEFAULT_LOCK_WAIT_SECONDS = 120.0
# A run none of whose processes lives is failed once it has shown no life for this long: well
# above a multiprocess run's pause between two steps, and within the two minutes a dead run may
# block the sensor (core/run_leases.py).
DEFAULT_DEAD_RUN_GRACE_SECONDS = 60
# Inside the data folder: the ledger, the embedding cache, local models named by
# BOOK_PIPELINE_EMBEDDING_MODEL, the Edge store, and the previous version's (local mode) store.
LEDGER_FILE_NAME = "ledger.sqlite"
EMBEDDING_CACHE_FOLDER = "embedding_cache"
MODEL_CACHE_FOLDER = "models"
EDGE_FOLDER_NAME = "qdrant-edge"
LEGACY_FOLDER_NAME = "qdrant"

_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A variable's value cannot be used; the message names the variable."""


@dataclass(frozen=True)
class CollectionSettings:
    """How a new collection is laid out; None leaves the engine's default.

    Applied only when the collection is created. A server takes all of them; the embedded Edge
    shard takes the vector ones (on-disk vectors and payloads, HNSW, int8 quantization) and has
    no use for the cluster ones (shards, replicas, write consistency).
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_vectors: bool = False
    on_disk_payload: bool | None = None
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    int8_quantization: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> CollectionSettings:
        return cls(
            shard_number=env_optional_int("QDRANT_SHARD_NUMBER", environ),
            replication_factor=env_optional_int("QDRANT_REPLICATION_FACTOR", environ),
            write_consistency_factor=env_optional_int("QDRANT_WRITE_CONSISTENCY_FACTOR", environ),
            on_disk_vectors=bool(env_bool("QDRANT_ON_DISK_VECTORS", False, environ)),
            on_disk_payload=env_bool("QDRANT_ON_DISK_PAYLOAD", None, environ),
            hnsw_m=env_optional_int("QDRANT_HNSW_M", environ),
            hnsw_ef_construct=env_optional_int("QDRANT_HNSW_EF_CONSTRUCT", environ),
            int8_quantization=bool(env_bool("QDRANT_INT8_QUANTIZATION", False, environ)),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline is configured with; `from_environment` reads the variables."""

    # None: ./books once it exists, else the bundled samples, decided at each use.
    books_dir: Path | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    settle_seconds: int = DEFAULT_SETTLE_SECONDS
    max_files_per_run: int = DEFAULT_MAX_FILES_PER_RUN
    max_file_mb: int = DEFAULT_MAX_FILE_MB
    embedder: str = "local"
    embedding_model: str | None = None
    # Secrets: kept out of repr, so a logged or printed Settings never shows them.
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    collection: str = DEFAULT_COLLECTION
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    collection_settings: CollectionSettings = CollectionSettings()
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    dead_run_grace_seconds: int = DEFAULT_DEAD_RUN_GRACE_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Raises `SettingsError` naming the variable when a value is unusable."""
        embedder = configured_embedder_provider(environ)
        if embedder not in EMBEDDER_PROVIDERS:
            raise SettingsError(f"{EMBEDDER_ENV} must be 'local' or 'openai', got {embedder!r}")
        books_dir = environ.get(BOOKS_DIR_ENV)
        return cls(
            books_dir=Path(books_dir) if books_dir else None,
            data_dir=Path(environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR),
            settle_seconds=env_int(SETTLE_SECONDS_ENV, DEFAULT_SETTLE_SECONDS, environ),
            max_files_per_run=env_int(MAX_FILES_PER_RUN_ENV, DEFAULT_MAX_FILES_PER_RUN, environ),
            max_file_mb=env_int(MAX_FILE_MB_VARIABLE, DEFAULT_MAX_FILE_MB, environ),
            embedder=embedder,
            embedding_model=environ.get(EMBEDDING_MODEL_ENV) or None,
            openai_api_key=environ.get(OPENAI_API_KEY_ENV) or None,
            openai_base_url=environ.get(OPENAI_BASE_URL_ENV) or None,
            collection=environ.get(COLLECTION_ENV) or DEFAULT_COLLECTION,
            qdrant_url=environ.get(QDRANT_URL_ENV) or None,
            qdrant_api_key=environ.get(QDRANT_API_KEY_ENV) or None,
            collection_settings=CollectionSettings.from_environment(environ),
            dead_run_grace_seconds=env_int(
                DEAD_RUN_GRACE_SECONDS_ENV, DEFAULT_DEAD_RUN_GRACE_SECONDS, environ
            ),
        )

    @property
    def books_folder(self) -> Path:
        return self.books_dir.expanduser().resolve() if self.books_dir else default_books_dir()

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * BYTES_PER_MB

    @property
    def state_folder(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def ledger_path(self) -> Path:
        return self.state_folder / LEDGER_FILE_NAME

    @property
    def embedding_cache_path(self) -> Path:
        return self.state_folder / EMBEDDING_CACHE_FOLDER

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / MODEL_CACHE_FOLDER

    @property
    def edge_path(self) -> Path:
        return self.data_dir / EDGE_FOLDER_NAME

    @property
    def legacy_path(self) -> Path:
        return self.data_dir / LEGACY_FOLDER_NAME


def configured_embedder_provider(environ: Mapping[str, str] = os.environ) -> str:
    """`BOOK_PIPELINE_EMBEDDER`: "local" (the default) or "openai"."""
    return environ.get(EMBEDDER_ENV) or "local"


def env_int(name: str, default: int, environ: Mapping[str, str] = os.environ) -> int:
    value = env_optional_int(name, environ)
    return default if value is None else value


def env_optional_int(name: str, environ: Mapping[str, str] = os.environ) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {value!r}") from None


def env_bool(
    name: str, default: bool | None, environ: Mapping[str, str] = os.environ
) -> bool | None:
    """A typo must fail loudly, not read as false."""
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise SettingsError(
        f"{name} must be one of {', '.join(_TRUE_WORDS + _FALSE_WORDS)}, got {value!r}"
    )

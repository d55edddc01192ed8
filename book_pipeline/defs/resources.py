"""Dagster resources for the outside world: the books folder, the embedding model, Qdrant."""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import diskcache
from pydantic import Field

from book_pipeline.core.book_files import BYTES_PER_MB, DEFAULT_MAX_FILE_MB, MAX_FILE_MB_VARIABLE
from book_pipeline.core.embedding import (
    LOCAL_MODEL_NAME,
    OPENAI_DEFAULT_MODEL,
    Embedder,
    OpenAIEmbedder,
    shared_local_embedder,
)
from book_pipeline.core.embedding_cache import open_embedding_cache
from book_pipeline.core.folders import BOOKS_DIR_ENV, DEFAULT_DATA_DIR, default_books_dir
from book_pipeline.core.ledger import LoadLedger
from book_pipeline.core.vector_store import (
    EDGE_FOLDER_NAME,
    LEGACY_FOLDER_NAME,
    BookVectorStore,
    CollectionSettings,
    open_vector_store,
)

# Local models named by BOOK_PIPELINE_EMBEDDING_MODEL are downloaded here, in the data dir.
MODEL_CACHE_FOLDER = "models"
DEFAULT_COLLECTION = "books"
DEFAULT_SETTLE_SECONDS = 30
DEFAULT_MAX_FILES_PER_RUN = 100
DEFAULT_OPENAI_MAX_RETRIES = 2


def env_or_default(name: str, default: str | None) -> str | dg.EnvVar | None:
    """Use the variable when it is set; the UI then shows its name, never a secret's value."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def env_int_or_default(name: str, default: int) -> int | dg.EnvVar:
    return dg.EnvVar.int(name) if os.environ.get(name) else default


def env_optional_int(name: str) -> int | dg.EnvVar | None:
    return dg.EnvVar.int(name) if os.environ.get(name) else None


_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


def env_bool(name: str, default: bool | None) -> bool | None:
    """Read now, not as an EnvVar: Dagster has no boolean EnvVar, and a typo must fail loudly."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(
        f"{name} must be one of {', '.join(_TRUE_WORDS + _FALSE_WORDS)}, got {value!r}"
    )


class BooksFolder(dg.ConfigurableResource):
    """Where the bookstore drops its description files (`BOOK_PIPELINE_BOOKS_DIR`)."""

    path: str | None = Field(
        default=None,
        description="Folder of .txt description files; unset: books/ in the working directory, "
        "or the bundled samples while it does not exist",
    )
    settle_seconds: int = Field(
        default=DEFAULT_SETTLE_SECONDS,
        description="A file unchanged for this long (or since the sensor's previous tick) is "
        "complete and may be loaded",
    )
    max_files_per_run: int = Field(
        default=DEFAULT_MAX_FILES_PER_RUN, description="The sensor's largest batch of files"
    )
    max_file_mb: int = Field(
        default=DEFAULT_MAX_FILE_MB,
        description="A bigger file (in MiB) is refused from its size, before it is read",
    )

    @property
    def folder(self) -> Path:
        return Path(self.path).expanduser().resolve() if self.path else default_books_dir()

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * BYTES_PER_MB


class EmbedderResource(dg.ConfigurableResource):
    """The model that turns book texts into vectors (`BOOK_PIPELINE_EMBEDDER`, `..._MODEL`)."""

    provider: Literal["local", "openai"] = "local"
    model: str | None = Field(
        default=None,
        description=f"local: {LOCAL_MODEL_NAME} (bundled, offline) by default, any fastembed "
        "model by name (downloaded into model_cache_dir on first use) or a model folder's path; "
        f"openai: defaults to {OPENAI_DEFAULT_MODEL}",
    )
    model_cache_dir: str = Field(
        default=str(Path(DEFAULT_DATA_DIR) / MODEL_CACHE_FOLDER),
        description="Where local models named by `model` are downloaded and looked up",
    )
    dimensions: int | None = Field(
        default=None, description="OpenAI text-embedding-3 models can return shorter vectors"
    )
    openai_api_key: str | None = Field(default=None, description="Set from OPENAI_API_KEY")
    openai_base_url: str | None = Field(
        default=None, description="Any OpenAI-compatible server (OPENAI_BASE_URL)"
    )
    openai_max_retries: int = Field(
        default=DEFAULT_OPENAI_MAX_RETRIES,
        description="The openai client's own quick retries of a 429, 5xx or lost connection; "
        "longer outages are the step retries' job (BOOK_PIPELINE_STEP_RETRIES)",
    )

    def get_embedder(self) -> Embedder:
        if self.provider == "openai":
            return OpenAIEmbedder(
                model=self.model or OPENAI_DEFAULT_MODEL,
                dimensions=self.dimensions,
                api_key=self.openai_api_key,
                base_url=self.openai_base_url,
                max_retries=self.openai_max_retries,
                # Inside a run, Dagster captures this logger: every error answer is in the log.
                on_error_response=dg.get_dagster_logger("book_pipeline.core.embedding").warning,
            )
        return shared_local_embedder(self.model, Path(self.model_cache_dir).expanduser())


class PipelineStateResource(dg.ConfigurableResource):
    """What the project remembers between runs (`BOOK_PIPELINE_DATA_DIR`): the load ledger and
    the embedding cache."""

    data_dir: str = Field(default=DEFAULT_DATA_DIR, description="Folder of the project's state")

    @property
    def folder(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def ledger(self) -> LoadLedger:
        return LoadLedger(self.folder / "ledger.sqlite")

    def embedding_cache(self) -> diskcache.Cache:
        return open_embedding_cache(self.folder / "embedding_cache")


class QdrantResource(dg.ConfigurableResource):
    """Qdrant: a server when `url` is set (`QDRANT_URL`), else an embedded Qdrant Edge store."""

    collection: str = DEFAULT_COLLECTION
    local_path: str = Field(
        default=str(Path(DEFAULT_DATA_DIR) / EDGE_FOLDER_NAME),
        description="Folder of the embedded Qdrant Edge store, used when no url is set",
    )
    legacy_path: str | None = Field(
        default=str(Path(DEFAULT_DATA_DIR) / LEGACY_FOLDER_NAME),
        description="The previous version's embedded store (qdrant-client local mode): its "
        "collection is copied into the Edge store on the first open, then never touched",
    )
    url: str | None = None
    api_key: str | None = Field(default=None, description="Set from QDRANT_API_KEY")
    lock_wait_seconds: float = Field(
        default=120.0,
        description="How long to wait for the embedded store while another process has it open",
    )
    # How a new collection is laid out on a server (docs/qdrant.md); unset: the server's default.
    shard_number: int | None = Field(
        default=None, description="Shards of a new collection, spread over the cluster's nodes"
    )
    replication_factor: int | None = Field(
        default=None, description="Copies of each shard of a new collection, on different nodes"
    )
    write_consistency_factor: int | None = Field(
        default=None, description="Replicas that must confirm a write before it succeeds"
    )
    on_disk_vectors: bool = Field(
        default=False, description="Keep a new collection's original vectors on disk (mmap)"
    )
    on_disk_payload: bool | None = Field(
        default=None,
        description="Keep a new collection's payloads on disk (indexed fields stay in RAM)",
    )
    hnsw_m: int | None = Field(default=None, description="HNSW graph links per point (server: 16)")
    hnsw_ef_construct: int | None = Field(
        default=None, description="HNSW candidates while building the graph (server: 100)"
    )
    int8_quantization: bool = Field(
        default=False,
        description="Also keep an int8 copy of each vector in RAM for search (a quarter the size)",
    )

    @property
    def collection_settings(self) -> CollectionSettings:
        return CollectionSettings(
            shard_number=self.shard_number,
            replication_factor=self.replication_factor,
            write_consistency_factor=self.write_consistency_factor,
            on_disk_vectors=self.on_disk_vectors,
            on_disk_payload=self.on_disk_payload,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construct=self.hnsw_ef_construct,
            int8_quantization=self.int8_quantization,
        )

    @property
    def location(self) -> str:
        return self.url or str(self._local_folder)

    @property
    def _local_folder(self) -> Path:
        return Path(self.local_path).expanduser().resolve()

    @contextmanager
    def open(self, on_wait: Callable[[str], None] | None = None) -> Iterator[BookVectorStore]:
        """Opened per use, not per run: the embedded store is locked for as long as it is open."""
        with open_vector_store(
            self.collection,
            self._local_folder,
            self.url,
            self.api_key,
            lock_wait_seconds=self.lock_wait_seconds,
            on_wait=on_wait,
            settings=self.collection_settings,
            legacy_path=Path(self.legacy_path).expanduser().resolve() if self.legacy_path else None,
        ) as store:
            yield store


def embedded_store_paths(data_dir: Path) -> dict[str, str]:
    """QdrantResource's folders in a data folder: the Edge store and the previous version's."""
    return {
        "local_path": str(data_dir / EDGE_FOLDER_NAME),
        "legacy_path": str(data_dir / LEGACY_FOLDER_NAME),
    }


def folders_run_config(books_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Run config pointing one run's resources at these folders (state and store in `data_dir`)."""
    return {
        "books_folder": {"config": {"path": str(books_dir)}},
        "embedder": {"config": {"model_cache_dir": str(data_dir / MODEL_CACHE_FOLDER)}},
        "qdrant": {"config": embedded_store_paths(data_dir)},
        "pipeline_state": {"config": {"data_dir": str(data_dir)}},
    }


def configured_embedder_provider() -> str:
    """`BOOK_PIPELINE_EMBEDDER`: "local" (the default) or "openai"."""
    return os.environ.get("BOOK_PIPELINE_EMBEDDER") or "local"


def resources_from_environment() -> dict[str, dg.ConfigurableResource]:
    # A plain path, not an EnvVar: the Qdrant folder is derived from it, and it is no secret.
    data_dir = os.environ.get("BOOK_PIPELINE_DATA_DIR") or DEFAULT_DATA_DIR
    return {
        "books_folder": BooksFolder(
            path=env_or_default(BOOKS_DIR_ENV, None),
            settle_seconds=env_int_or_default(
                "BOOK_PIPELINE_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS
            ),
            max_files_per_run=env_int_or_default(
                "BOOK_PIPELINE_MAX_FILES_PER_RUN", DEFAULT_MAX_FILES_PER_RUN
            ),
            max_file_mb=env_int_or_default(MAX_FILE_MB_VARIABLE, DEFAULT_MAX_FILE_MB),
        ),
        "embedder": EmbedderResource(
            # Read now, not as an EnvVar: the field is a choice of two, checked when this loads.
            provider=configured_embedder_provider(),
            model=env_or_default("BOOK_PIPELINE_EMBEDDING_MODEL", None),
            model_cache_dir=str(Path(data_dir) / MODEL_CACHE_FOLDER),
            openai_api_key=env_or_default("OPENAI_API_KEY", None),
            openai_base_url=env_or_default("OPENAI_BASE_URL", None),
        ),
        "qdrant": QdrantResource(
            collection=env_or_default("BOOK_PIPELINE_COLLECTION", DEFAULT_COLLECTION),
            **embedded_store_paths(Path(data_dir)),
            url=env_or_default("QDRANT_URL", None),
            api_key=env_or_default("QDRANT_API_KEY", None),
            shard_number=env_optional_int("QDRANT_SHARD_NUMBER"),
            replication_factor=env_optional_int("QDRANT_REPLICATION_FACTOR"),
            write_consistency_factor=env_optional_int("QDRANT_WRITE_CONSISTENCY_FACTOR"),
            on_disk_vectors=env_bool("QDRANT_ON_DISK_VECTORS", False),
            on_disk_payload=env_bool("QDRANT_ON_DISK_PAYLOAD", None),
            hnsw_m=env_optional_int("QDRANT_HNSW_M"),
            hnsw_ef_construct=env_optional_int("QDRANT_HNSW_EF_CONSTRUCT"),
            int8_quantization=env_bool("QDRANT_INT8_QUANTIZATION", False),
        ),
        "pipeline_state": PipelineStateResource(data_dir=data_dir),
    }


def resources_outside_dagster() -> dict[str, dg.ConfigurableResource]:
    """The same resources with the variables read now, for code that runs without Dagster (CLI).

    Outside a run an `EnvVar` field holds the variable's name, not its value.
    """
    return {
        name: resource.process_config_and_initialize()
        for name, resource in resources_from_environment().items()
    }

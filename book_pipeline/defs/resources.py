"""Dagster resources for the outside world: the books folder, the embedding model, Qdrant.

Each wraps the core (`book_pipeline.core`); their values come from `Settings.from_environment()`,
the configuration the `book-pipeline` command reads too.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import diskcache
from pydantic import Field, PrivateAttr

from book_pipeline.core.book_files import BYTES_PER_MB, DEFAULT_MAX_FILE_MB, MAX_FILE_MB_VARIABLE
from book_pipeline.core.embedding import (
    LOCAL_MODEL_NAME,
    OPENAI_DEFAULT_MODEL,
    Embedder,
    configured_embedder,
)
from book_pipeline.core.embedding_cache import open_embedding_cache
from book_pipeline.core.folders import BOOKS_DIR_ENV, DEFAULT_DATA_DIR, default_books_dir
from book_pipeline.core.ledger import LoadLedger
from book_pipeline.core.run_leases import RunLease
from book_pipeline.core.settings import (
    COLLECTION_ENV,
    DEAD_RUN_GRACE_SECONDS_ENV,
    DEFAULT_COLLECTION,
    DEFAULT_DEAD_RUN_GRACE_SECONDS,
    DEFAULT_LOCK_WAIT_SECONDS,
    DEFAULT_MAX_FILES_PER_RUN,
    DEFAULT_OPENAI_MAX_RETRIES,
    DEFAULT_SETTLE_SECONDS,
    EDGE_FOLDER_NAME,
    EMBEDDING_CACHE_FOLDER,
    EMBEDDING_MODEL_ENV,
    LEDGER_FILE_NAME,
    LEGACY_FOLDER_NAME,
    MAX_FILES_PER_RUN_ENV,
    MODEL_CACHE_FOLDER,
    OPENAI_API_KEY_ENV,
    OPENAI_BASE_URL_ENV,
    QDRANT_API_KEY_ENV,
    QDRANT_URL_ENV,
    SETTLE_SECONDS_ENV,
    CollectionSettings,
    Settings,
)
from book_pipeline.core.vector_store import (
    BookVectorStore,
    CollectionStamp,
    open_vector_store,
    read_collection_stamp,
)


def env_or_default(name: str, default: str | None) -> str | dg.EnvVar | None:
    """Use the variable when it is set; the UI then shows its name, never a secret's value."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def env_int_or_default(name: str, default: int | None) -> int | dg.EnvVar | None:
    """The same for a number; `Settings` has already checked that it is one."""
    return dg.EnvVar.int(name) if os.environ.get(name) else default


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
        return configured_embedder(
            self.provider,
            self.model,
            Path(self.model_cache_dir),
            dimensions=self.dimensions,
            api_key=self.openai_api_key,
            base_url=self.openai_base_url,
            max_retries=self.openai_max_retries,
            # Inside a run, Dagster captures this logger: every error answer is in the log.
            on_error_response=dg.get_dagster_logger("book_pipeline.core.embedding").warning,
        )


class PipelineStateResource(dg.ConfigurableResource):
    """What the project remembers between runs (`BOOK_PIPELINE_DATA_DIR`): the load ledger, the
    embedding cache, and the leases of running runs.

    In a run, every process that uses it holds the run's lease from setup to teardown
    (core/run_leases.py): the in-process executor's one process, each step's process otherwise.
    """

    data_dir: str = Field(default=DEFAULT_DATA_DIR, description="Folder of the project's state")
    dead_run_grace_seconds: int = Field(
        default=DEFAULT_DEAD_RUN_GRACE_SECONDS,
        description="A run none of whose processes is alive is failed after this long without "
        "a sign of life",
    )
    _lease: RunLease | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Sensors and schedules build resources too, outside any run.
        if context.run is not None:
            self._lease = RunLease(self.folder, context.run.run_id, self.dead_run_grace_seconds)
            self._lease.start()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._lease is not None:
            self._lease.end()

    @property
    def folder(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def ledger(self) -> LoadLedger:
        return LoadLedger(self.folder / LEDGER_FILE_NAME)

    def embedding_cache(self) -> diskcache.Cache:
        return open_embedding_cache(self.folder / EMBEDDING_CACHE_FOLDER)


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
        default=DEFAULT_LOCK_WAIT_SECONDS,
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

    def read_stamp(self) -> CollectionStamp | None:
        """The collection's generation and load sequence, without waiting for a running load."""
        return read_collection_stamp(self.collection, self._local_folder, self.url, self.api_key)


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


def resources_from_environment() -> dict[str, dg.ConfigurableResource]:
    """The code location's resources: `Settings.from_environment()`, with every variable that is
    set passed as an `EnvVar`, so the UI shows its name rather than its value."""
    settings = Settings.from_environment()
    layout = settings.collection_settings
    return {
        "books_folder": BooksFolder(
            path=env_or_default(BOOKS_DIR_ENV, None),
            settle_seconds=env_int_or_default(SETTLE_SECONDS_ENV, settings.settle_seconds),
            max_files_per_run=env_int_or_default(MAX_FILES_PER_RUN_ENV, settings.max_files_per_run),
            max_file_mb=env_int_or_default(MAX_FILE_MB_VARIABLE, settings.max_file_mb),
        ),
        "embedder": EmbedderResource(
            # A plain value, not an EnvVar: the field is a choice of two, checked when this loads.
            provider=settings.embedder,
            model=env_or_default(EMBEDDING_MODEL_ENV, None),
            model_cache_dir=str(settings.model_cache_dir),
            openai_api_key=env_or_default(OPENAI_API_KEY_ENV, None),
            openai_base_url=env_or_default(OPENAI_BASE_URL_ENV, None),
        ),
        "qdrant": QdrantResource(
            collection=env_or_default(COLLECTION_ENV, DEFAULT_COLLECTION),
            # Plain paths, not EnvVars: derived from the data folder, and no secret.
            **embedded_store_paths(settings.data_dir),
            url=env_or_default(QDRANT_URL_ENV, None),
            api_key=env_or_default(QDRANT_API_KEY_ENV, None),
            shard_number=env_int_or_default("QDRANT_SHARD_NUMBER", layout.shard_number),
            replication_factor=env_int_or_default(
                "QDRANT_REPLICATION_FACTOR", layout.replication_factor
            ),
            write_consistency_factor=env_int_or_default(
                "QDRANT_WRITE_CONSISTENCY_FACTOR", layout.write_consistency_factor
            ),
            on_disk_vectors=layout.on_disk_vectors,
            on_disk_payload=layout.on_disk_payload,
            hnsw_m=env_int_or_default("QDRANT_HNSW_M", layout.hnsw_m),
            hnsw_ef_construct=env_int_or_default(
                "QDRANT_HNSW_EF_CONSTRUCT", layout.hnsw_ef_construct
            ),
            int8_quantization=layout.int8_quantization,
        ),
        "pipeline_state": PipelineStateResource(
            data_dir=str(settings.data_dir),
            dead_run_grace_seconds=env_int_or_default(
                DEAD_RUN_GRACE_SECONDS_ENV, settings.dead_run_grace_seconds
            ),
        ),
    }

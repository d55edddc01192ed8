"""Dagster resources for the outside world: the books folder, the embedding model, Qdrant.

Each wraps the core (`book_pipeline.core`); their values come from `Settings.from_environment()`,
the configuration the `book-pipeline` command reads too.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import diskcache
from pydantic import Field, PrivateAttr

from book_pipeline.core.embedding.base import Embedder
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME
from book_pipeline.core.embedding.cache import open_embedding_cache
from book_pipeline.core.embedding.choosing import choose_embedder, recorded_model_name
from book_pipeline.core.embedding.costs import TokenBudget, price_per_mtok
from book_pipeline.core.embedding.openai_endpoint import OPENAI_DEFAULT_MODEL
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.ingest.rebuild import (
    LoadingVersions,
    VersionPlan,
    plan_versions,
    read_loading_stamp,
)
from book_pipeline.core.runtime.run_leases import RunLease
from book_pipeline.core.settings import (
    DEFAULT_LOCK_WAIT_SECONDS,
    DEFAULT_OPENAI_MAX_RETRIES,
    VARIABLES,
    CollectionSettings,
    EmbedderChoice,
    Settings,
    Variable,
)
from book_pipeline.core.store.base import BookVectorStore, CollectionStamp
from book_pipeline.core.store.opening import open_store_versions
from book_pipeline.core.store.versions import EmbedderRecord, VersionCatalog

DEFAULTS = Settings()
# The resource key of PipelineStateResource: the executors read its config (defs/executors.py).
PIPELINE_STATE_KEY = "pipeline_state"


def _from_variable(variable: Variable[Any], value: Any) -> Any:
    """`value`, or an `EnvVar` when the variable is set: the UI then shows the variable's name,
    never a secret's value. `Settings` has already checked it; a yes/no stays a plain value (an
    `EnvVar` holds text or a whole number)."""
    if isinstance(value, bool) or not variable.is_set():
        return value
    return dg.EnvVar.int(variable.name) if isinstance(value, int) else dg.EnvVar(variable.name)


def _field(variable: Variable[Any]) -> Any:
    """A resource field that a variable sets: its default and description come from the table."""
    return Field(default=variable.default, description=variable.description)


class BooksFolder(dg.ConfigurableResource):
    """Where the bookstore drops its description files (`BOOK_PIPELINE_BOOKS_DIR`)."""

    path: str | None = Field(default=None, description=VARIABLES.books_dir.description)
    settle_seconds: int = _field(VARIABLES.settle_seconds)
    max_files_per_run: int = _field(VARIABLES.max_files_per_run)
    first_batch_files: int = _field(VARIABLES.first_batch_files)
    max_file_mb: int = _field(VARIABLES.max_file_mb)

    @property
    def _settings(self) -> Settings:
        books_dir = Path(self.path) if self.path else None
        return Settings(books_dir=books_dir, max_file_mb=self.max_file_mb)

    @property
    def folder(self) -> Path:
        return self._settings.books_folder

    @property
    def max_file_bytes(self) -> int:
        return self._settings.max_file_bytes


class EmbedderResource(dg.ConfigurableResource):
    """The model that turns book texts into vectors (`BOOK_PIPELINE_EMBEDDER`, `..._MODEL`)."""

    provider: Literal["local", "openai"] = VARIABLES.embedder.default
    model: str | None = Field(
        default=None,
        description=f"local: {LOCAL_MODEL_NAME} (bundled, offline) by default, any fastembed "
        "model by name (downloaded into model_cache_dir on first use) or a model folder's path; "
        f"openai: defaults to {OPENAI_DEFAULT_MODEL}",
    )
    model_cache_dir: str = Field(
        default=str(DEFAULTS.model_cache_dir),
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
    price_per_mtok: float | None = _field(VARIABLES.embedding_price_per_mtok)
    max_tokens_per_run: int | None = _field(VARIABLES.max_embedding_tokens_per_run)

    @property
    def billed_by_token(self) -> bool:
        return self.provider == "openai"

    @property
    def token_limit_per_run(self) -> int | None:
        """The run's token budget; None: no limit (or a model no one bills by the token)."""
        return self.max_tokens_per_run if self.billed_by_token else None

    def price(self, model_name: str) -> float | None:
        return price_per_mtok(self.provider, model_name, self.price_per_mtok)

    @property
    def choice(self) -> EmbedderChoice:
        return EmbedderChoice(
            provider=self.provider,
            model=self.model,
            model_cache_dir=Path(self.model_cache_dir),
            dimensions=self.dimensions,
            api_key=self.openai_api_key,
            base_url=self.openai_base_url,
            max_retries=self.openai_max_retries,
        )

    def get_embedder(self, choice: EmbedderChoice | None = None) -> Embedder:
        """The configured embedder, or the one `choice` names (a collection version's own)."""
        return choose_embedder(
            choice or self.choice,
            # Inside a run, Dagster captures this logger: every error answer is in the log.
            on_error_response=dg.get_dagster_logger("book_pipeline.core.embedding").warning,
        )

    def model_name(self) -> str:
        """The configured model's name as collections record it, without an API call."""
        return recorded_model_name(self.choice)

    def record(self) -> EmbedderRecord:
        return EmbedderRecord(self.provider, self.model, self.dimensions)


class PipelineStateResource(dg.ConfigurableResource):
    """What the project remembers between runs (`BOOK_PIPELINE_DATA_DIR`): the load ledger, the
    embedding cache, and the leases of running runs.

    In a run, every process that uses it holds the run's lease from setup to teardown
    (core/runtime/run_leases.py): each step's process with the multiprocess or Celery executor;
    the process that orchestrates the run holds it too, from the executor (defs/executors.py).
    """

    data_dir: str = Field(
        default=str(VARIABLES.data_dir.default), description="Folder of the project's state"
    )
    dead_run_grace_seconds: int = _field(VARIABLES.dead_run_grace_seconds)
    max_removed_files_per_run: int | None = _field(VARIABLES.max_removed_files_per_run)
    embedding_cache_mb: int = _field(VARIABLES.embedding_cache_mb)
    failed_run_output_days: int = _field(VARIABLES.failed_run_output_days)
    run_history_days: int = _field(VARIABLES.run_history_days)
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
    def _settings(self) -> Settings:
        return Settings(data_dir=Path(self.data_dir))

    @property
    def folder(self) -> Path:
        return self._settings.state_folder

    def ledger(self) -> LoadLedger:
        return LoadLedger(self._settings.ledger_path)

    def embedding_cache(self) -> diskcache.Cache:
        return open_embedding_cache(self._settings.embedding_cache_path, self.embedding_cache_mb)

    def token_budget(self, run_key: str, limit: int | None) -> TokenBudget | None:
        """The run's budget, shared by its processes; None when it has no limit."""
        if limit is None:
            return None
        return TokenBudget(self._settings.embedding_budget_path, run_key, limit)


class CollectionLayout(dg.Config):
    """How a new collection is laid out (the `QDRANT_*` layout variables, docs/qdrant.md)."""

    shard_number: int | None = _field(VARIABLES.shard_number)
    replication_factor: int | None = _field(VARIABLES.replication_factor)
    write_consistency_factor: int | None = _field(VARIABLES.write_consistency_factor)
    on_disk_vectors: bool = _field(VARIABLES.on_disk_vectors)
    on_disk_payload: bool | None = _field(VARIABLES.on_disk_payload)
    hnsw_m: int | None = _field(VARIABLES.hnsw_m)
    hnsw_ef_construct: int | None = _field(VARIABLES.hnsw_ef_construct)
    int8_quantization: bool = _field(VARIABLES.int8_quantization)

    @classmethod
    def from_settings(cls, settings: CollectionSettings) -> "CollectionLayout":
        return cls(
            **{
                name: _from_variable(getattr(VARIABLES, name), value)
                for name, value in asdict(settings).items()
            }
        )

    def collection_settings(self) -> CollectionSettings:
        return CollectionSettings(
            **{field.name: getattr(self, field.name) for field in fields(CollectionSettings)}
        )


class QdrantResource(dg.ConfigurableResource):
    """Qdrant: a server when `url` is set (`QDRANT_URL`), else an embedded Qdrant Edge store."""

    collection: str = VARIABLES.collection.default
    local_path: str = Field(
        default=str(DEFAULTS.edge_path),
        description="Folder of the embedded Qdrant Edge store, used when no url is set",
    )
    legacy_path: str | None = Field(
        default=str(DEFAULTS.legacy_path),
        description="The previous version's embedded store (qdrant-client local mode): its "
        "collection is copied into the Edge store on the first open, then never touched",
    )
    url: str | None = None
    api_key: str | None = Field(default=None, description="Set from QDRANT_API_KEY")
    lock_wait_seconds: float = Field(
        default=DEFAULT_LOCK_WAIT_SECONDS,
        description="How long to wait for the embedded store while another process has it open",
    )
    layout: CollectionLayout = Field(
        default=CollectionLayout(),
        description="How a new collection is laid out; unset: the engine's default",
    )
    model_switch_rule: str = _field(VARIABLES.model_switch_rule)

    @property
    def collection_settings(self) -> CollectionSettings:
        return self.layout.collection_settings()

    @property
    def location(self) -> str:
        return self.url or str(self._local_folder)

    @property
    def _local_folder(self) -> Path:
        return Path(self.local_path).expanduser().resolve()

    @contextmanager
    def open_versions(
        self, on_wait: Callable[[str], None] | None = None, read_only: bool = False
    ) -> Iterator[VersionCatalog]:
        """Every version of the collection (core/store/versions.py), as `open` opens one.
        `read_only`: a read, which upgrades nothing (core/store/read_only.py)."""
        with open_store_versions(
            self.collection,
            self._local_folder,
            self.url,
            self.api_key,
            lock_wait_seconds=self.lock_wait_seconds,
            on_wait=on_wait,
            settings=self.collection_settings,
            legacy_path=Path(self.legacy_path).expanduser().resolve() if self.legacy_path else None,
            read_only=read_only,
        ) as catalog:
            yield catalog

    @contextmanager
    def open(
        self, on_wait: Callable[[str], None] | None = None, read_only: bool = False
    ) -> Iterator[BookVectorStore]:
        """The current version. Opened per use, not per run: the embedded store is locked for
        as long as it is open. `read_only`: a read, which upgrades nothing."""
        with self.open_versions(on_wait, read_only) as catalog:
            yield catalog.open(catalog.current_name())

    @contextmanager
    def open_for_loading(
        self, model_name: str, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[LoadingVersions]:
        """The version runs load into for `model_name`, and the current one."""
        with self.open_versions(on_wait) as catalog:
            yield LoadingVersions(catalog, plan_versions(catalog, model_name))

    def read_stamp(self, model_name: str) -> tuple[VersionPlan, CollectionStamp | None]:
        """Where runs load for `model_name`, and that version's generation and load sequence,
        without waiting for a running load."""
        return read_loading_stamp(
            self.collection, self._local_folder, self.url, self.api_key, model_name
        )


def embedded_store_paths(data_dir: Path) -> dict[str, str]:
    """QdrantResource's folders in a data folder: the Edge store and the previous version's."""
    settings = Settings(data_dir=data_dir)
    return {"local_path": str(settings.edge_path), "legacy_path": str(settings.legacy_path)}


def folders_run_config(books_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Run config pointing one run's resources at these folders (state and store in `data_dir`)."""
    model_cache_dir = Settings(data_dir=data_dir).model_cache_dir
    return {
        "books_folder": {"config": {"path": str(books_dir)}},
        "embedder": {"config": {"model_cache_dir": str(model_cache_dir)}},
        "qdrant": {"config": embedded_store_paths(data_dir)},
        "pipeline_state": {"config": {"data_dir": str(data_dir)}},
    }


def resources_from_environment() -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, from `Settings.from_environment()`; every variable that is
    set is passed as an `EnvVar`, so the UI shows its name rather than its value."""
    settings = Settings.from_environment()
    return {
        "books_folder": BooksFolder(
            path=_from_variable(VARIABLES.books_dir, settings.books_dir),
            settle_seconds=_from_variable(VARIABLES.settle_seconds, settings.settle_seconds),
            max_files_per_run=_from_variable(
                VARIABLES.max_files_per_run, settings.max_files_per_run
            ),
            first_batch_files=_from_variable(
                VARIABLES.first_batch_files, settings.first_batch_files
            ),
            max_file_mb=_from_variable(VARIABLES.max_file_mb, settings.max_file_mb),
        ),
        "embedder": EmbedderResource(
            # A plain value, not an EnvVar: the field is a choice of two, checked when this loads.
            provider=settings.embedder,
            model=_from_variable(VARIABLES.embedding_model, settings.embedding_model),
            model_cache_dir=str(settings.model_cache_dir),
            openai_api_key=_from_variable(VARIABLES.openai_api_key, settings.openai_api_key),
            openai_base_url=_from_variable(VARIABLES.openai_base_url, settings.openai_base_url),
            # A plain value: Dagster's EnvVar reads strings and whole numbers, not prices.
            price_per_mtok=settings.embedding_price_per_mtok,
            max_tokens_per_run=_from_variable(
                VARIABLES.max_embedding_tokens_per_run, settings.max_embedding_tokens_per_run
            ),
        ),
        "qdrant": QdrantResource(
            collection=_from_variable(VARIABLES.collection, settings.collection),
            # Plain paths, not EnvVars: derived from the data folder, and no secret.
            **embedded_store_paths(settings.data_dir),
            url=_from_variable(VARIABLES.qdrant_url, settings.qdrant_url),
            api_key=_from_variable(VARIABLES.qdrant_api_key, settings.qdrant_api_key),
            layout=CollectionLayout.from_settings(settings.collection_settings),
            model_switch_rule=_from_variable(
                VARIABLES.model_switch_rule, settings.model_switch_rule
            ),
        ),
        PIPELINE_STATE_KEY: PipelineStateResource(
            data_dir=str(settings.data_dir),
            dead_run_grace_seconds=_from_variable(
                VARIABLES.dead_run_grace_seconds, settings.dead_run_grace_seconds
            ),
            max_removed_files_per_run=_from_variable(
                VARIABLES.max_removed_files_per_run, settings.max_removed_files_per_run
            ),
            embedding_cache_mb=_from_variable(
                VARIABLES.embedding_cache_mb, settings.embedding_cache_mb
            ),
            failed_run_output_days=_from_variable(
                VARIABLES.failed_run_output_days, settings.failed_run_output_days
            ),
            run_history_days=_from_variable(VARIABLES.run_history_days, settings.run_history_days),
        ),
    }

"""The project's configuration: one table of environment variables (`VARIABLES`), and the
`Settings` read from it.

This is the only module that reads the environment (book_pipeline_tests/test_architecture.py
checks it). Each row of the table says a variable's name, how its text becomes a value, the value
when it is unset, whether it is a secret and what it means; `Settings.from_environment()`, the
Dagster resources (`book_pipeline.defs.resources`), the `book-pipeline` command and the reference
in docs/configuration.md all come from it. Only standard-library imports here: the CLI's `status`
reads its configuration without paying for numpy, Qdrant or Dagster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from book_pipeline.core.books.files import BYTES_PER_MB, DEFAULT_MAX_FILE_MB
from book_pipeline.core.books.folders import DEFAULT_DATA_DIR, default_books_dir

DEFAULT_COLLECTION = "books"
DEFAULT_OPENAI_MAX_RETRIES = 2
DEFAULT_LOCK_WAIT_SECONDS = 120.0
# Port 465 speaks TLS from the start; any other port (587, 25) upgrades with STARTTLS.
SMTP_SSL_PORT = 465
# Inside the data folder: the ledger, the embedding cache, local models named by
# BOOK_PIPELINE_EMBEDDING_MODEL, the Edge store, and the previous version's (local mode) store.
LEDGER_FILE_NAME = "ledger.sqlite"
EMBEDDING_CACHE_FOLDER = "embedding_cache"
MODEL_CACHE_FOLDER = "models"
EDGE_FOLDER_NAME = "qdrant-edge"
LEGACY_FOLDER_NAME = "qdrant"
# Each run's reserved embedding tokens, shared by the processes that embed its files.
EMBEDDING_BUDGET_FILE_NAME = "embedding_budget.sqlite"

_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")

T = TypeVar("T")


class SettingsError(ValueError):
    """A variable's value cannot be used; the message names the variable."""


# The parsers: each turns a variable's text into its value, or raises ValueError saying what the
# text must be (`Variable.read` puts the variable's name in front).


def text(value: str) -> str:
    return value


def stripped_text(value: str) -> str:
    return value.strip()


def upper_case_word(value: str) -> str:
    return value.strip().upper()


def whole_number(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, got {value.strip()!r}") from None


def whole_number_at_least_zero(value: str) -> int:
    number = whole_number(value)
    if number < 0:
        raise ValueError(f"must be a whole number of at least 0, got {value.strip()!r}")
    return number


def number_at_least_zero(value: str) -> float:
    refusal = ValueError(f"must be a number of at least 0, got {value.strip()!r}")
    try:
        number = float(value.strip())
    except ValueError:
        raise refusal from None
    if not number >= 0:  # also refuses nan
        raise refusal
    return number


def yes_or_no(value: str) -> bool:
    """A typo must fail loudly, not read as false."""
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"must be one of {', '.join(_TRUE_WORDS + _FALSE_WORDS)}, got {word!r}")


def embedder_provider(value: str) -> str:
    if value not in ("local", "openai"):
        raise ValueError(f"must be 'local' or 'openai', got {value!r}")
    return value


# When a collection version rebuilt for a new embedding model may become current
# (core/ingest/rebuild.py): its retrieval probes find at least as many books as the current
# version's, or every one of them; or never by itself (`book-pipeline versions switch`).
MODEL_SWITCH_RULES = ("at-least-as-many", "every-probe", "manual")


def model_switch_rule(value: str) -> str:
    rule = value.strip().lower()
    if rule not in MODEL_SWITCH_RULES:
        raise ValueError(f"must be one of {', '.join(MODEL_SWITCH_RULES)}, got {rule!r}")
    return rule


def comma_separated(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Variable(Generic[T]):
    """One environment variable: a row of the table.

    A secret is never shown: `Settings`' repr leaves it out, and the Dagster resources take every
    variable that is set as an `EnvVar`, so the UI shows its name. Unset and blank are the same:
    the default.
    """

    name: str
    parse: Callable[[str], T]
    default: T
    description: str
    secret: bool = False

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        return bool(_environment(environ).get(self.name, "").strip())

    def read(self, environ: Mapping[str, str] | None = None) -> T:
        """The variable's value; `SettingsError` naming the variable when it cannot be used."""
        if not self.is_set(environ):
            return self.default
        try:
            return self.parse(_environment(environ)[self.name])
        except ValueError as error:
            raise SettingsError(f"{self.name} {error}") from None


def _environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


class Variables:
    """Every variable, in the order of docs/configuration.md. A row's attribute is the field of
    `Settings` it fills (of `CollectionSettings` for the collection layout, `QDRANT_SHARD_NUMBER`
    to `QDRANT_INT8_QUANTIZATION`)."""

    books_dir = Variable(
        "BOOK_PIPELINE_BOOKS_DIR",
        Path,
        None,
        "Folder of description files; unset: `books` in the working directory once it exists, "
        "until then the bundled `book_pipeline/sample_books`, read only, and only while the "
        "collection holds nothing but sample books (`book-pipeline add-books` creates `./books` "
        "from the samples)",
    )
    data_dir = Variable(
        "BOOK_PIPELINE_DATA_DIR",
        Path,
        Path(DEFAULT_DATA_DIR),
        "Project state (relative to the working directory): the ledger, the embedding cache, "
        f"downloaded models (`{MODEL_CACHE_FOLDER}`) and the embedded Qdrant Edge store "
        f"(`{EDGE_FOLDER_NAME}`; the previous version's `{LEGACY_FOLDER_NAME}` folder is copied "
        "into it once)",
    )
    collection = Variable("BOOK_PIPELINE_COLLECTION", text, DEFAULT_COLLECTION, "Qdrant collection")
    embedder = Variable(
        "BOOK_PIPELINE_EMBEDDER",
        embedder_provider,
        "local",
        "`local` (a fastembed model on this machine) or `openai`",
    )
    embedding_model = Variable(
        "BOOK_PIPELINE_EMBEDDING_MODEL",
        text,
        None,
        "Embedding model; unset: `all-MiniLM-L6-v2-onnx-int8` (local: bundled, offline) or "
        "`text-embedding-3-small` (openai). Local: any fastembed model by name, downloaded into "
        "`$BOOK_PIPELINE_DATA_DIR/models` on first use, or a model folder's path",
    )
    settle_seconds = Variable(
        "BOOK_PIPELINE_SETTLE_SECONDS",
        whole_number,
        30,
        "A new file is loaded once unchanged since the sensor's previous tick, or untouched this "
        "long",
    )
    max_files_per_run = Variable(
        "BOOK_PIPELINE_MAX_FILES_PER_RUN",
        whole_number,
        100,
        "The sensor's largest batch of files in one run",
    )
    first_batch_files = Variable(
        "BOOK_PIPELINE_FIRST_BATCH_FILES",
        whole_number,
        10,
        "When no run of the sensor's is loading, its first batch of new files is at most this "
        "many, so the first books of a big drop are searchable within seconds",
    )
    max_file_mb = Variable(
        "BOOK_PIPELINE_MAX_FILE_MB",
        whole_number,
        DEFAULT_MAX_FILE_MB,
        "A bigger description file (MiB) is refused from its size, before it is read",
    )
    sensor_interval_seconds = Variable(
        "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS",
        whole_number,
        10,
        "How often the daemon evaluates `new_book_files_sensor` (and the dead run and "
        "retention sensors)",
    )
    qdrant_url = Variable(
        "QDRANT_URL",
        text,
        None,
        "A Qdrant server, e.g. `http://localhost:6333`; unset: the embedded store",
    )
    qdrant_api_key = Variable(
        "QDRANT_API_KEY", text, None, "API key for the Qdrant server", secret=True
    )
    shard_number = Variable(
        "QDRANT_SHARD_NUMBER",
        whole_number,
        None,
        "Shards of a new collection, spread over the cluster's nodes (docs/qdrant.md); server "
        "only; unset: the server's choice",
    )
    replication_factor = Variable(
        "QDRANT_REPLICATION_FACTOR",
        whole_number,
        None,
        "Copies of each shard of a new collection, on different nodes; server only; unset: 1",
    )
    write_consistency_factor = Variable(
        "QDRANT_WRITE_CONSISTENCY_FACTOR",
        whole_number,
        None,
        "Replicas that must confirm a write before it succeeds; server only; unset: 1",
    )
    on_disk_vectors = Variable(
        "QDRANT_ON_DISK_VECTORS",
        yes_or_no,
        False,
        "Keep a new collection's original vectors on disk (memory-mapped) instead of RAM",
    )
    on_disk_payload = Variable(
        "QDRANT_ON_DISK_PAYLOAD",
        yes_or_no,
        None,
        "Keep a new collection's payloads on disk (indexed fields stay in RAM); unset: the "
        "engine's default (on disk)",
    )
    hnsw_m = Variable(
        "QDRANT_HNSW_M",
        whole_number,
        None,
        "HNSW links per point of a new collection (more: better recall, more memory); unset: 16",
    )
    hnsw_ef_construct = Variable(
        "QDRANT_HNSW_EF_CONSTRUCT",
        whole_number,
        None,
        "HNSW candidates while building a new collection's graph (more: better graph, slower "
        "build); unset: 100",
    )
    int8_quantization = Variable(
        "QDRANT_INT8_QUANTIZATION",
        yes_or_no,
        False,
        "Also keep an int8 copy of each vector in RAM to search with (a quarter of the size)",
    )
    openai_api_key = Variable(
        "OPENAI_API_KEY", text, None, "Key for the `openai` embedder", secret=True
    )
    openai_base_url = Variable(
        "OPENAI_BASE_URL",
        text,
        None,
        "Any OpenAI-compatible embeddings server; unset: OpenAI",
    )
    embedding_price_per_mtok = Variable(
        "BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK",
        number_at_least_zero,
        None,
        "Dollars per million embedding tokens, for a model the price table lacks or a price of "
        "your own; unset: the OpenAI model's list price (docs/costs.md), 0 for a local model, "
        "unknown for any other",
    )
    max_embedding_tokens_per_run = Variable(
        "BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN",
        whole_number_at_least_zero,
        None,
        "A run sends no embedding request that would take it past this many tokens; the files "
        "that would are held back, pending (openai embedder); unset: no limit",
    )
    max_removed_files_per_run = Variable(
        "BOOK_PIPELINE_MAX_REMOVED_FILES_PER_RUN",
        whole_number_at_least_zero,
        None,
        "A run removes the books of at most this many files that left the books folder; past "
        "it, it removes none, fails and names them (raise this for one run, or `book-pipeline "
        "forget FILE...`); unset: a tenth of the files loaded, at least 5. An empty books folder "
        "never removes books",
    )
    model_switch_rule = Variable(
        "BOOK_PIPELINE_MODEL_SWITCH_RULE",
        model_switch_rule,
        MODEL_SWITCH_RULES[0],
        "When the collection rebuilt for a new embedding model replaces the current one: "
        "`at-least-as-many` (its retrieval probes find at least as many books as the current "
        "one's), `every-probe` (every probe finds its book), `manual` (only by `book-pipeline "
        "versions switch`); docs/operations.md",
    )
    step_retries = Variable(
        "BOOK_PIPELINE_STEP_RETRIES",
        whole_number_at_least_zero,
        3,
        "Step retries of the embed and load steps (0: none); read when the code location loads",
    )
    retry_delay_seconds = Variable(
        "BOOK_PIPELINE_RETRY_DELAY_SECONDS",
        number_at_least_zero,
        2.0,
        "Base delay of those retries: about 2, 6, 14 s (exponential), each give or take 2 s "
        "(jitter)",
    )
    alert_webhook_url = Variable(
        "BOOK_PIPELINE_ALERT_WEBHOOK_URL",
        stripped_text,
        None,
        "Slack-compatible incoming webhook for failed runs (never logged, only its host); "
        "unset: no POST",
        secret=True,
    )
    alert_email_to = Variable(
        "BOOK_PIPELINE_ALERT_EMAIL_TO",
        comma_separated,
        (),
        "Comma-separated recipients of failure emails; also set the sender, SMTP host and "
        "password; unset: no email",
    )
    alert_email_from = Variable(
        "BOOK_PIPELINE_ALERT_EMAIL_FROM",
        text,
        None,
        "Sender of failure emails, also the SMTP user",
    )
    alert_smtp_host = Variable(
        "BOOK_PIPELINE_ALERT_SMTP_HOST", text, None, "SMTP server for failure emails"
    )
    alert_smtp_port = Variable(
        "BOOK_PIPELINE_ALERT_SMTP_PORT",
        whole_number,
        SMTP_SSL_PORT,
        f"{SMTP_SSL_PORT}: TLS from the start; any other port (587): STARTTLS",
    )
    alert_smtp_password = Variable(
        "BOOK_PIPELINE_ALERT_SMTP_PASSWORD",
        text,
        None,
        "SMTP password for failure emails",
        secret=True,
    )
    celery_broker = Variable(
        "BOOK_PIPELINE_CELERY_BROKER",
        text,
        "redis://127.0.0.1:6379/0",
        "Celery broker of `fetch_data_celery` (the `deploy` extra; docs/deploy.md); may hold a "
        "password, so the executor reads it at run time",
        secret=True,
    )
    celery_backend = Variable(
        "BOOK_PIPELINE_CELERY_BACKEND",
        text,
        None,
        "Celery result backend of `fetch_data_celery`; unset: the broker",
        secret=True,
    )
    # Well above a multiprocess run's pause between two steps, and within the two minutes a
    # dead run may block the sensor (core/runtime/run_leases.py).
    dead_run_grace_seconds = Variable(
        "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS",
        whole_number_at_least_zero,
        60,
        "A fetch_data run none of whose processes lives is failed once it has shown no life for "
        "this long (docs/operations.md); keep it above the step retries' delays",
    )
    embedding_cache_mb = Variable(
        "BOOK_PIPELINE_EMBEDDING_CACHE_MB",
        whole_number_at_least_zero,
        1024,
        "Size bound of the embedding cache (MiB, about 2 kB a text: 1024 holds ~500,000 texts); "
        "beyond it the oldest stored vectors are evicted (and paid again if needed)",
    )
    failed_run_output_days = Variable(
        "BOOK_PIPELINE_FAILED_RUN_OUTPUT_DAYS",
        whole_number_at_least_zero,
        7,
        "A failed run's step outputs (for a re-execution from failure) are removed once its "
        "files are loaded or refused since, or this many days after it ended; a successful "
        "run's at once (docs/operations.md)",
    )
    run_history_days = Variable(
        "BOOK_PIPELINE_RUN_HISTORY_DAYS",
        whole_number_at_least_zero,
        30,
        "Finished Dagster runs older than this are deleted with their event logs, but for the "
        "asset's latest materialization (0: kept forever)",
    )
    log_level = Variable(
        "BOOK_PIPELINE_LOG_LEVEL",
        upper_case_word,
        "INFO",
        "Console log level of `fetch_data` runs (`DEBUG` for Dagster's every event); read when "
        "the code location loads",
    )
    fail_point = Variable(
        "BOOK_PIPELINE_FAIL_POINT",
        text,
        None,
        "Crash tests only: the fail point where the process kills itself "
        "(book_pipeline/core/runtime/fail_points.py)",
    )

    def items(self) -> Iterator[tuple[str, Variable[Any]]]:
        """(attribute, variable) for every row, in the table's order."""
        for attribute, value in vars(Variables).items():
            if isinstance(value, Variable):
                yield attribute, value

    def __iter__(self) -> Iterator[Variable[Any]]:
        return (variable for _, variable in self.items())


VARIABLES = Variables()


@dataclass(frozen=True)
class CollectionSettings:
    """How a new collection is laid out; None leaves the engine's default.

    Applied only when the collection is created. A server takes all of them; the embedded Edge
    shard takes the vector ones (on-disk vectors and payloads, HNSW, int8 quantization) and has
    no use for the cluster ones (shards, replicas, write consistency).
    """

    shard_number: int | None = VARIABLES.shard_number.default
    replication_factor: int | None = VARIABLES.replication_factor.default
    write_consistency_factor: int | None = VARIABLES.write_consistency_factor.default
    on_disk_vectors: bool = VARIABLES.on_disk_vectors.default
    on_disk_payload: bool | None = VARIABLES.on_disk_payload.default
    hnsw_m: int | None = VARIABLES.hnsw_m.default
    hnsw_ef_construct: int | None = VARIABLES.hnsw_ef_construct.default
    int8_quantization: bool = VARIABLES.int8_quantization.default


@dataclass(frozen=True, repr=False)
class EmbedderChoice:
    """What a configuration says about the embedder (`core.embedding.choosing` picks it):
    `Settings.embedder_choice`, or the Dagster resource's fields."""

    provider: str
    model: str | None
    model_cache_dir: Path
    dimensions: int | None = None
    api_key: str | None = None
    base_url: str | None = None
    max_retries: int = DEFAULT_OPENAI_MAX_RETRIES

    def __repr__(self) -> str:
        return f"EmbedderChoice({self.provider!r}, {self.model!r}, {self.base_url!r})"


# Not generated: a secret is left out of repr, so a logged or printed Settings never shows it.
@dataclass(frozen=True, repr=False)
class Settings:
    """Everything the pipeline is configured with: a field for each row of `VARIABLES` (the
    collection layout's in `collection_settings`), read by `from_environment`."""

    books_dir: Path | None = VARIABLES.books_dir.default
    data_dir: Path = VARIABLES.data_dir.default
    collection: str = VARIABLES.collection.default
    embedder: str = VARIABLES.embedder.default
    embedding_model: str | None = VARIABLES.embedding_model.default
    settle_seconds: int = VARIABLES.settle_seconds.default
    max_files_per_run: int = VARIABLES.max_files_per_run.default
    first_batch_files: int = VARIABLES.first_batch_files.default
    max_file_mb: int = VARIABLES.max_file_mb.default
    sensor_interval_seconds: int = VARIABLES.sensor_interval_seconds.default
    qdrant_url: str | None = VARIABLES.qdrant_url.default
    qdrant_api_key: str | None = VARIABLES.qdrant_api_key.default
    collection_settings: CollectionSettings = CollectionSettings()
    openai_api_key: str | None = VARIABLES.openai_api_key.default
    openai_base_url: str | None = VARIABLES.openai_base_url.default
    embedding_price_per_mtok: float | None = VARIABLES.embedding_price_per_mtok.default
    max_embedding_tokens_per_run: int | None = VARIABLES.max_embedding_tokens_per_run.default
    max_removed_files_per_run: int | None = VARIABLES.max_removed_files_per_run.default
    model_switch_rule: str = VARIABLES.model_switch_rule.default
    step_retries: int = VARIABLES.step_retries.default
    retry_delay_seconds: float = VARIABLES.retry_delay_seconds.default
    alert_webhook_url: str | None = VARIABLES.alert_webhook_url.default
    alert_email_to: tuple[str, ...] = VARIABLES.alert_email_to.default
    alert_email_from: str | None = VARIABLES.alert_email_from.default
    alert_smtp_host: str | None = VARIABLES.alert_smtp_host.default
    alert_smtp_port: int = VARIABLES.alert_smtp_port.default
    alert_smtp_password: str | None = VARIABLES.alert_smtp_password.default
    celery_broker: str = VARIABLES.celery_broker.default
    celery_backend: str | None = VARIABLES.celery_backend.default
    dead_run_grace_seconds: int = VARIABLES.dead_run_grace_seconds.default
    embedding_cache_mb: int = VARIABLES.embedding_cache_mb.default
    failed_run_output_days: int = VARIABLES.failed_run_output_days.default
    run_history_days: int = VARIABLES.run_history_days.default
    log_level: str = VARIABLES.log_level.default
    fail_point: str | None = VARIABLES.fail_point.default
    # Not variables: the run config can change them.
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every variable of `VARIABLES` (`os.environ` unless `environ` is given); raises
        `SettingsError` naming the variable when a value is unusable."""
        values = {attribute: variable.read(environ) for attribute, variable in VARIABLES.items()}
        layout = {field.name: values.pop(field.name) for field in fields(CollectionSettings)}
        return cls(**values, collection_settings=CollectionSettings(**layout))

    def __repr__(self) -> str:
        secrets = {attribute for attribute, variable in VARIABLES.items() if variable.secret}
        shown = (
            f"{field.name}={getattr(self, field.name)!r}"
            for field in fields(self)
            if field.name not in secrets
        )
        return f"Settings({', '.join(shown)})"

    @property
    def books_folder(self) -> Path:
        """Decided at each use when unset: `./books` once it exists, else the bundled samples."""
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
    def embedding_budget_path(self) -> Path:
        return self.state_folder / EMBEDDING_BUDGET_FILE_NAME

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / MODEL_CACHE_FOLDER

    @property
    def embedder_choice(self) -> EmbedderChoice:
        return EmbedderChoice(
            provider=self.embedder,
            model=self.embedding_model,
            model_cache_dir=self.model_cache_dir,
            api_key=self.openai_api_key,
            base_url=self.openai_base_url,
        )

    @property
    def edge_path(self) -> Path:
        return self.data_dir / EDGE_FOLDER_NAME

    @property
    def legacy_path(self) -> Path:
        return self.data_dir / LEGACY_FOLDER_NAME


def variable_reference() -> str:
    """The table of variables as markdown: docs/configuration.md holds it (a test checks)."""
    rows = [
        "| Variable | Default | Secret | Meaning |",
        "| --- | --- | --- | --- |",
        *(
            f"| `{variable.name}` | {_shown_default(variable.default)} | "
            f"{'yes' if variable.secret else ''} | {variable.description} |"
            for variable in VARIABLES
        ),
    ]
    return "\n".join(rows) + "\n"


def _shown_default(default: object) -> str:
    if default is None or default == ():
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


if __name__ == "__main__":
    print(variable_reference(), end="")

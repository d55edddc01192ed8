"""The fetch_data ops: list files, then one transform and one embed copy per file, then one load.

Names follow the Airflow lesson's `fetch_data` DAG so its readers find their way around. Only
pending files (new, or changed since they were loaded) get a copy: the load ledger says which.
"""

import hashlib
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg
from pydantic import Field

from book_pipeline.cli.invocation import book_pipeline_command
from book_pipeline.core.books.files import (
    UNREAD_SHA256,
    mapping_key_for,
    read_book_file,
    snapshot_book_file,
)
from book_pipeline.core.books.folders import BooksFolderMissingError
from book_pipeline.core.books.parsing import BookFileError, ParsedBookFile, parse_book_data
from book_pipeline.core.embedding.base import EmbeddingModelError
from book_pipeline.core.embedding.book_file import EmbeddedBookFile, embed_book_file
from book_pipeline.core.embedding.costs import TokenBudgetExceeded
from book_pipeline.core.ingest.ownership import OtherPipelinesFilesError
from book_pipeline.core.ingest.rebuild import LoadOptions, load_into_target
from book_pipeline.core.ingest.removal_guard import HeldRemoval
from book_pipeline.core.runtime.disk_space import DiskFullError
from book_pipeline.core.store.errors import CollectionMismatchError
from book_pipeline.core.store.versions import VersionError
from book_pipeline.defs.refusal_ops import OverBudgetBookFile, RefusedBookFile
from book_pipeline.defs.resources import (
    BooksFolder,
    EmbedderResource,
    PipelineStateResource,
    QdrantResource,
)
from book_pipeline.defs.retries import EXTERNAL_STEP_RETRY_POLICY

# A step that met a full disk names the folder, and the free bytes a new attempt needs there.
FULL_DISK_FOLDER = "full_disk_folder"
FULL_DISK_NEEDED_BYTES = "needed_bytes"
# Asset metadata lists at most this many file names; the counts are always complete.
_LISTED_FILES_LIMIT = 100
# What a retry would only repeat: the user must change the store or folder.
_NO_RETRY = (
    CollectionMismatchError,
    BooksFolderMissingError,
    OtherPipelinesFilesError,
    VersionError,
)
# The query the load's last log line suggests trying next: it makes sense for any books.
SEARCH_EXAMPLE = "a detective on a train"


class ListFilesConfig(dg.Config):
    only_files: list[str] | None = Field(
        default=None,
        description="Restrict the run to these file names (the sensor's batch); "
        "unset: every pending file",
    )


class LoadConfig(dg.Config):
    remove_books_of_deleted_files: bool = Field(
        default=True,
        description="When a loaded file disappears from the folder, delete its books from Qdrant",
    )


@dg.op(out=dg.DynamicOut(str))
def list_book_description_files(
    context: dg.OpExecutionContext,
    config: ListFilesConfig,
    books_folder: BooksFolder,
    qdrant: QdrantResource,
    pipeline_state: PipelineStateResource,
    embedder: EmbedderResource,
):
    """One dynamic output per pending file; with none, nothing downstream is mapped.

    Pending: new or changed, or recorded as loaded while the store does not hold its books.
    The store is the collection version of the configured model (core/ingest/rebuild.py).
    """
    try:
        with qdrant.open_for_loading(embedder.model_name(), context.log.warning) as versions:
            if versions.target is None or versions.plan.rebuilding:
                context.log.warning(versions.plan.describe())
            if versions.target is None:
                return
            listing = versions.list_target(pipeline_state.ledger(), books_folder.folder)
    except BooksFolderMissingError as error:
        raise _cannot_heal(error) from error
    review = listing.review
    pending = review.pending
    if config.only_files is not None:
        requested = set(config.only_files)
        pending = [snapshot for snapshot in pending if snapshot.name in requested]
    if listing.stamp is None:
        context.log.info(
            f"the Qdrant collection {qdrant.collection!r} does not exist at {qdrant.location}: "
            "every file is loaded into it"
        )
    for drift in review.drifted:
        context.log.warning(f"loading {drift.file_name} again: {drift.describe()}")
    for entry in review.failed_unchanged:
        context.log.warning(
            f"skipping {entry.file_name}: it failed before and has not changed ({entry.error})"
        )
    context.log.info(
        f"{len(pending)} pending file(s) in {books_folder.folder}; "
        f"{review.up_to_date} already loaded, {len(review.failed_unchanged)} failed and unchanged"
        + (f", {len(review.drifted)} not held by the store as recorded" if review.drifted else "")
    )
    for snapshot in pending:
        yield dg.DynamicOutput(str(snapshot.path), mapping_key=mapping_key_for(snapshot.name))


@dg.op(
    out={
        "books": dg.Out(ParsedBookFile, is_required=False, description="The file's books"),
        # Yielded for every file (None: accepted), so that the refusal fan-out and the
        # every_file_accepted check run in every run, not only in runs that refuse a file.
        "refusal": dg.Out(
            RefusedBookFile | None, description="Why the file was refused; None: accepted"
        ),
    }
)
def transform_book_description_file(
    context: dg.OpExecutionContext,
    books_folder: BooksFolder,
    pipeline_state: PipelineStateResource,
    file_path: str,
):
    """Parse one file into book records, or refuse it: exactly one of the two outputs.

    A refusal is not raised here: a failed copy would make Dagster skip the load of every other
    file (`.collect()` waits for all copies). The refusal goes to the file's own
    `refuse_book_description_file` step, which fails instead. Refused before reading: a file
    over `max_file_mb`, a symlink that leads outside the folder.
    """
    path = Path(file_path)
    data: bytes | None = None
    try:
        snapshot, data = read_book_file(path, books_folder.folder, books_folder.max_file_bytes)
        parsed = parse_book_data(snapshot, data)
    except BookFileError as error:
        if data is None:  # refused unread: recorded as the listing saw it, so it stays skipped
            snapshot, sha256 = snapshot_book_file(path, books_folder.folder), UNREAD_SHA256
        else:
            sha256 = hashlib.sha256(data).hexdigest()
        pipeline_state.ledger().record_failed(snapshot, sha256, str(error), error.line_number)
        context.log.warning(f"refused: {error}")
        yield dg.Output(
            RefusedBookFile(snapshot, str(error), error.line_number, error.problem), "refusal"
        )
        return
    yield dg.Output(parsed, "books")
    yield dg.Output(None, "refusal")


def _cannot_heal(error: Exception) -> dg.Failure:
    """A failure that the step retries would only repeat: fail at once, naming the cause."""
    return dg.Failure(description=str(error), allow_retries=False)


def _disk_full(error: DiskFullError) -> dg.Failure:
    """Not retried either; the metadata tells the sensor when a new run may succeed."""
    return dg.Failure(
        description=str(error),
        metadata={
            FULL_DISK_FOLDER: dg.MetadataValue.path(str(error.folder)),
            FULL_DISK_NEEDED_BYTES: error.needed_bytes,
            "free_bytes": error.free_bytes,
        },
        allow_retries=False,
    )


@dg.op(
    retry_policy=EXTERNAL_STEP_RETRY_POLICY,
    out={
        "embedded": dg.Out(EmbeddedBookFile, is_required=False, description="The file's vectors"),
        # Yielded for every file (None: within the budget), like the transform's refusal.
        "over_budget": dg.Out(
            OverBudgetBookFile | None,
            description="Why the run's token budget held the file back; None: embedded",
        ),
    },
)
def create_vector_embeddings(
    context: dg.OpExecutionContext,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateResource,
    book_file: ParsedBookFile,
):
    """Embed one file's books in batches, paying only for texts this model has never seen.

    An endpoint that is down, busy or failing is retried (book_pipeline.defs.retries); an answer
    that cannot change (a bad request or key, a damaged local model) fails at once. A file that
    would take the run past its token budget is not sent: like a refused file, it goes to its
    own failing step (`refuse_over_budget_book_file`), so the load of the others goes on.
    """
    budget = pipeline_state.token_budget(context.run_id, embedder.token_limit_per_run)
    try:
        embedded = embed_book_file(
            embedder.get_embedder(),
            pipeline_state.embedding_cache(),
            book_file,
            embedder.billed_by_token,
            budget,
        )
    except TokenBudgetExceeded as error:
        context.log.warning(error.for_a_file())
        yield dg.Output(
            OverBudgetBookFile(
                book_file.snapshot, error.for_a_file(), error.limit, error.spent, error.needed
            ),
            "over_budget",
        )
        return
    except EmbeddingModelError as error:
        if error.retryable:
            raise
        raise _cannot_heal(error) from error
    except DiskFullError as error:
        raise _disk_full(error) from error
    yield dg.Output(embedded, "embedded")
    yield dg.Output(None, "over_budget")


@dg.op(
    retry_policy=EXTERNAL_STEP_RETRY_POLICY,
    out={
        "summary": dg.Out(dict, description="What the load did: counts, model, cost"),
        "removal_hold": dg.Out(HeldRemoval | None, description="Removals held back; None: none"),
    },
)
def load_embeddings_to_vector_db(
    context: dg.OpExecutionContext,
    config: LoadConfig,
    embedder: EmbedderResource,
    qdrant: QdrantResource,
    books_folder: BooksFolder,
    pipeline_state: PipelineStateResource,
    embedded_files: list[EmbeddedBookFile],
):
    """Make Qdrant match the files: each file's books replaced, deleted files' books removed,
    unless the removal guard holds them back (then `check_removals_confirmed` fails the run).

    The store is opened only for the time this takes (the embedded store locks its folder).
    """
    started = time.perf_counter()
    model_name = embedder.get_embedder().model_name
    try:
        with qdrant.open_for_loading(model_name, context.log.warning) as versions:
            try:
                summary, collection, location = load_into_target(
                    versions,
                    pipeline_state.ledger(),
                    books_folder.folder,
                    embedded_files,
                    LoadOptions(
                        model_name,
                        config.remove_books_of_deleted_files,
                        embedder.billed_by_token,
                        embedder.price(model_name),
                        embedder.record(),
                        pipeline_state.max_removed_files_per_run,
                    ),
                )
            except _NO_RETRY as error:
                raise _cannot_heal(error) from error
    except DiskFullError as error:
        # A refused batch, then the index build that closing the store tried: the batch's tells.
        first = error.__context__ if isinstance(error.__context__, DiskFullError) else error
        raise _disk_full(first) from error
    for message in summary.messages(collection, location):
        context.log.info(message)
    if summary.counts["collection_size"]:
        command = book_pipeline_command()
        context.log.info(f'search them: {command} search "{SEARCH_EXAMPLE}" --limit 5')
    stage_seconds = _stage_seconds(context)
    stage_seconds["load_embeddings_to_vector_db"] = time.perf_counter() - started
    metadata = _load_metadata(summary.counts, collection, location, stage_seconds)
    metadata["files"] = dg.MetadataValue.json(summary.loaded_files[:_LISTED_FILES_LIMIT])
    metadata["failed_files"] = dg.MetadataValue.json(
        dict(list(summary.failed_files.items())[:_LISTED_FILES_LIMIT])
    )
    yield dg.Output(summary.counts, "summary", metadata=metadata)
    yield dg.Output(summary.held_removal, "removal_hold")


def _load_metadata(
    counts: dict, collection: str, location: str, stage_seconds: dict[str, float]
) -> dict:
    """The materialization's counts, where the books went, and the seconds of each stage."""
    cost = counts["embedding_cost_usd"]
    return {
        **counts,
        "qdrant_collection": collection,
        "qdrant_location": location,
        # Unknown, never 0, when nothing gives the model's price.
        "embedding_cost_usd": "unknown" if cost is None else dg.MetadataValue.float(cost),
        **{
            f"seconds_{stage}": dg.MetadataValue.float(round(seconds, 3))
            for stage, seconds in stage_seconds.items()
        },
    }


def _stage_seconds(context: dg.OpExecutionContext) -> dict[str, float]:
    """Time spent in each op of this run so far, summed over its mapped copies."""
    totals: dict[str, float] = defaultdict(float)
    for entry in context.instance.all_logs(
        context.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
    ):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        op_name = event.step_key.split("[")[0].rsplit(".", 1)[-1]
        totals[op_name] += event.event_specific_data.duration_ms / 1000
    return dict(totals)

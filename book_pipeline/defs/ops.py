"""The fetch_data ops: list files, then one transform and one embed copy per file, then one load.

Names follow the Airflow lesson's `fetch_data` DAG so its readers find their way around. Only
pending files (new, or changed since they were loaded) get a copy: the load ledger says which.
"""

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from book_pipeline.cli.invocation import book_pipeline_command
from book_pipeline.core.books.files import (
    UNREAD_SHA256,
    FileSnapshot,
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
from book_pipeline.core.store.base import CollectionMismatchError
from book_pipeline.core.store.versions import VersionError
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


@dataclass(frozen=True)
class OverBudgetBookFile:
    """A file the run's token budget held back: none of its texts was sent."""

    snapshot: FileSnapshot
    error: str
    limit: int
    spent: int
    needed: int


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


@dataclass(frozen=True)
class RefusedBookFile:
    """A file the transform refused: the file as it was read, and why (names file and line)."""

    snapshot: FileSnapshot
    error: str
    line_number: int | None
    problem: str


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


@dg.op(out=dg.DynamicOut(RefusedBookFile))
def list_refused_book_files(refusals: list[RefusedBookFile | None]):
    """One dynamic output per refused file, under the file's own mapping key.

    Gathered and mapped again, rather than mapped straight from the transform, so that a run of
    good files has no extra (skipped) step per file in the UI.
    """
    for refusal in refusals:
        if refusal is not None:
            yield dg.DynamicOutput(refusal, mapping_key=mapping_key_for(refusal.snapshot.name))


@dg.op(out=dg.Out(dg.Nothing))
def refuse_book_description_file(books_folder: BooksFolder, refusal: RefusedBookFile) -> None:
    """Fail this file's own step, with the error naming the file, the line and the problem.

    Run again by a re-execution from failure, it reads nothing but the file's stat: it fails
    the same way, and says so when the file has changed since, because only a new run (the
    sensor, Materialize) reads and loads the new version.
    """
    description = refusal.error
    if _changed_since(refusal.snapshot, books_folder.folder):
        description += (
            f" ({refusal.snapshot.name} has changed since it was refused: a re-execution reuses "
            "this run's parsed files, so start a new run, or let the sensor, to load it)"
        )
    raise dg.Failure(
        description=description,
        metadata={
            "file": dg.MetadataValue.path(str(refusal.snapshot.path)),
            "line": refusal.line_number or 0,
            "problem": refusal.problem,
        },
        # A malformed file stays malformed: retrying cannot help, fixing the file does.
        allow_retries=False,
    )


def _changed_since(snapshot: FileSnapshot, books_folder: Path) -> bool:
    try:
        current = snapshot_book_file(snapshot.path, books_folder)
    except OSError:  # deleted or renamed since
        return True
    return (current.size, current.mtime_ns) != (snapshot.size, snapshot.mtime_ns)


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


@dg.op(out=dg.DynamicOut(OverBudgetBookFile))
def list_over_budget_book_files(held_back: list[OverBudgetBookFile | None]):
    """One dynamic output per file the token budget held back, under its own mapping key."""
    for file in held_back:
        if file is not None:
            yield dg.DynamicOutput(file, mapping_key=mapping_key_for(file.snapshot.name))


@dg.op(out=dg.Out(dg.Nothing))
def refuse_over_budget_book_file(held_back: OverBudgetBookFile) -> None:
    """Fail this file's own step, naming the budget, what the run had spent and what the file
    needs, so the run fails (and its alerts fire) while the other files load. Not retried: the
    budget is the run's; the next run has its own."""
    raise dg.Failure(
        description=held_back.error,
        metadata={
            "file": dg.MetadataValue.path(str(held_back.snapshot.path)),
            "max_embedding_tokens_per_run": held_back.limit,
            "tokens_spent_by_the_run": held_back.spent,
            "tokens_needed": held_back.needed,
        },
        allow_retries=False,
    )


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
    cost = summary.counts["embedding_cost_usd"]
    yield dg.Output(
        summary.counts,
        "summary",
        metadata={
            **summary.counts,
            "qdrant_collection": collection,
            "qdrant_location": location,
            "files": dg.MetadataValue.json(summary.loaded_files[:_LISTED_FILES_LIMIT]),
            "failed_files": dg.MetadataValue.json(
                dict(list(summary.failed_files.items())[:_LISTED_FILES_LIMIT])
            ),
            # Unknown, never 0, when nothing gives the model's price.
            "embedding_cost_usd": "unknown" if cost is None else dg.MetadataValue.float(cost),
            **{
                f"seconds_{stage}": dg.MetadataValue.float(round(seconds, 3))
                for stage, seconds in stage_seconds.items()
            },
        },
    )
    yield dg.Output(summary.held_removal, "removal_hold")


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

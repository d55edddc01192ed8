"""new_book_files_sensor: new or changed files in the books folder start a fetch_data run.

Cheap by design: it stats the folder and reads the load ledger, and of the Qdrant store only the
collection's stamp (the embedded store's manifest, read without the lock a running load holds;
one request to a server), never a file's content unless its size and mtime are ambiguous. The
stamp is what makes a deleted, replaced, emptied or restored collection start a run: the
ledger's loads count only for the collection generation and load sequence they were made in.

A run in progress that loads books, however it was started (defs/loading_runs.py), holds its
files, unless its processes died: each tick first fails the dead
runs (defs/dead_runs.py), so their files are requested again. A batch whose last run met a full
disk is requested again only once the space that run lacked is free (docs/operations.md).
"""

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg

from book_pipeline.core.ingest.arrivals import PlannedBatch, SeenFiles, plan_tick
from book_pipeline.core.ingest.folder_review import review_books_folder
from book_pipeline.core.runtime.disk_space import describe_bytes, free_bytes
from book_pipeline.core.settings import VARIABLES
from book_pipeline.core.store.errors import (
    StoreDamagedError,
    StoreUnreachableError,
)
from book_pipeline.defs.alerts import step_failure_events
from book_pipeline.defs.dead_runs import fail_dead_runs
from book_pipeline.defs.jobs import fetch_data
from book_pipeline.defs.loading_runs import files_of_run, loading_runs
from book_pipeline.defs.ops import FULL_DISK_FOLDER, FULL_DISK_NEEDED_BYTES
from book_pipeline.defs.resources import (
    BooksFolder,
    EmbedderResource,
    PipelineStateResource,
    QdrantResource,
)

BATCH_TAG = "book_pipeline/batch"
# A batch whose runs keep failing (an embedding endpoint down for good) is not retried forever;
# a change to its files, or a manual run, starts over.
MAX_ATTEMPTS_PER_BATCH = 3
SENSOR_INTERVAL_SECONDS = VARIABLES.sensor_interval_seconds.read()


def run_config_for(files: list[str]) -> dict[str, Any]:
    return {
        "ops": {
            "book_embeddings": {
                "ops": {"list_book_description_files": {"config": {"only_files": files}}}
            }
        }
    }


def _decode_cursor(cursor: str | None) -> SeenFiles:
    return json.loads(cursor)["seen"] if cursor else {}


def space_wanted(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[Path, int] | None:
    """The folder and the free bytes a failed run's step found missing (a full disk), or None
    when it failed for another reason."""
    if run.status != dg.DagsterRunStatus.FAILURE:
        return None
    for event in step_failure_events(instance, run.run_id):
        user_data = event.step_failure_data.user_failure_data
        metadata = user_data.metadata if user_data else {}
        if FULL_DISK_FOLDER in metadata and FULL_DISK_NEEDED_BYTES in metadata:
            needed = metadata[FULL_DISK_NEEDED_BYTES].value
            return Path(str(metadata[FULL_DISK_FOLDER].value)), int(needed)
    return None


def _run_request(
    context: dg.SensorEvaluationContext, batch: PlannedBatch
) -> dg.RunRequest | dg.SkipReason:
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch.batch_id}))
    # Newest first. A full disk is not the batch's fault: it waits for space, it does not use
    # up attempts.
    space_wanted_by_run = [space_wanted(context.instance, run) for run in runs]
    attempts = sum(wanted is None for wanted in space_wanted_by_run)
    if attempts >= MAX_ATTEMPTS_PER_BATCH:
        context.log.warning(
            f"not retrying {batch.files or batch.removed_files}: {attempts} runs for them failed; "
            "change the files or materialize book_embeddings by hand"
        )
        return dg.SkipReason(f"{attempts} runs for {len(batch.files)} file(s) failed")
    latest_wanted = space_wanted_by_run[0] if runs else None
    if latest_wanted is not None:
        folder, needed = latest_wanted
        free = free_bytes(folder)
        if free < needed:
            return dg.SkipReason(
                f"waiting for free space in {folder}: {describe_bytes(free)} free, "
                f"{describe_bytes(needed)} needed"
            )
    return dg.RunRequest(
        run_key=f"{batch.batch_id}-{len(runs)}",
        run_config=run_config_for(batch.files),
        tags={BATCH_TAG: batch.batch_id, "book_pipeline/files": str(len(batch.files))},
    )


@dg.sensor(
    job=fetch_data,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests fetch_data for new, changed or deleted description files once they "
    "have stopped changing; nothing new, no run.",
)
def new_book_files_sensor(
    context: dg.SensorEvaluationContext,
    books_folder: BooksFolder,
    qdrant: QdrantResource,
    pipeline_state: PipelineStateResource,
    embedder: EmbedderResource,
) -> dg.SensorResult | dg.SkipReason:
    # A dead run would otherwise hold its files (or every pending file) forever.
    for run_id in fail_dead_runs(context.instance, pipeline_state):
        context.log.warning(f"run {run_id} died: marked failed, its files are pending again")
    in_flight: set[str] = set()
    for run in loading_runs(context.instance):
        files = files_of_run(run)
        if files is None:
            return dg.SkipReason(f"run {run.run_id} is loading every pending file")
        in_flight.update(files)

    try:
        # The version runs load into: a new one while a model change is being rebuilt.
        plan, stamp = qdrant.read_stamp(embedder.model_name())
    except (StoreDamagedError, StoreUnreachableError) as error:
        context.log.warning(str(error))
        return dg.SkipReason(f"cannot read the Qdrant collection: {error}")
    if plan.target is None:
        context.log.warning(plan.describe())
        return dg.SkipReason(plan.describe())
    review = review_books_folder(books_folder.folder, pipeline_state.ledger(), stamp)
    plan = plan_tick(
        review,
        seen=_decode_cursor(context.cursor),
        in_flight=in_flight,
        now_ns=time.time_ns(),
        settle_seconds=books_folder.settle_seconds,
        max_files_per_run=books_folder.max_files_per_run,
        first_batch_files=books_folder.first_batch_files,
    )
    answers = [_run_request(context, batch) for batch in plan.batches]
    requests = [answer for answer in answers if isinstance(answer, dg.RunRequest)]
    held_back = [answer.skip_message for answer in answers if isinstance(answer, dg.SkipReason)]
    cursor = json.dumps({"seen": plan.seen}, sort_keys=True)
    if not requests:
        if held_back:
            reason = "; ".join(str(message) for message in held_back)
        elif plan.still_settling:
            reason = f"{len(plan.still_settling)} file(s) still being written"
        else:
            reason = "no new, changed or deleted files"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails runs whose processes died (a kill, an out-of-memory kill, a power cut), "
    "however they were started, so that the failure alerts fire; new_book_files_sensor then "
    "loads their files again.",
)
def dead_run_sensor(
    context: dg.SensorEvaluationContext, pipeline_state: PipelineStateResource
) -> dg.SkipReason:
    failed = fail_dead_runs(context.instance, pipeline_state)
    for run_id in failed:
        context.log.warning(f"run {run_id} died: marked failed")
    return dg.SkipReason(f"marked failed: {', '.join(failed)}" if failed else "no dead run")

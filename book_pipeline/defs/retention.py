"""run_retention_sensor: `$DAGSTER_HOME` holds what pending work needs, not the history.

- A successful run's step outputs (each file's parsed books and vectors, ~3 kB a book) are
  removed at the next tick: its books are loaded and nothing re-executes it from failure.
- A failed (or canceled) run's outputs stay while a re-execution from failure may still use
  them: until every file it worked on has been loaded, refused or removed since it started (by
  its re-execution or a later run; the load ledger says), or `BOOK_PIPELINE_FAILED_RUN_OUTPUT_
  DAYS` have passed since it ended. Never while a run of its group (a re-execution) is going on.
- Finished runs older than `BOOK_PIPELINE_RUN_HISTORY_DAYS` are deleted with their event logs and
  compute logs, except the run of the asset's latest materialization (the UI's current state).

Sensor ticks are purged by Dagster's own `retention:` settings (deploy/local/dagster.yaml).
"""

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from book_pipeline.core.ingest.ledger import LedgerEntry
from book_pipeline.core.ingest.run_outputs import (
    RunOutputs,
    files_dealt_with_since,
    runs_with_outputs,
)
from book_pipeline.core.settings import VARIABLES
from book_pipeline.core.store.errors import (
    StoreDamagedError,
    StoreUnreachableError,
)
from book_pipeline.defs.resources import EmbedderResource, PipelineStateResource, QdrantResource

SECONDS_PER_DAY = 86_400
# A tick deletes at most this many old runs (each deletes its event log): ticks stay short,
# and the backlog of a first upgrade goes over a few ticks.
MAX_RUNS_DELETED_PER_TICK = 50
RETENTION_INTERVAL_SECONDS = VARIABLES.sensor_interval_seconds.read()
_FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


def _run_group_in_progress(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    group = instance.get_run_group(run.run_id)
    runs = group[1] if group else [run]
    return any(not member.is_finished for member in runs)


def outputs_still_needed(
    instance: dg.DagsterInstance,
    outputs: RunOutputs,
    entries: dict[str, LedgerEntry] | None,
    failed_run_output_days: int,
    now: float,
) -> bool:
    """Whether a run's step outputs may still be read: by the run itself, a re-execution in
    progress, or a re-execution from failure of files still waiting. `entries`: the ledger's
    records for the current collection (None: the store could not be read, so keep)."""
    run = instance.get_run_by_id(outputs.run_id)
    if run is None:  # the run was deleted: no re-execution can name it
        return False
    if not run.is_finished or _run_group_in_progress(instance, run):
        return True
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return False
    record = instance.get_run_record_by_id(run.run_id)
    started = (record.start_time if record else None) or 0.0
    ended = (record.end_time if record else None) or now
    if now - ended >= failed_run_output_days * SECONDS_PER_DAY:
        return False
    if entries is None:
        return True
    return not files_dealt_with_since(entries, outputs.mapping_keys, started)


def remove_unneeded_outputs(
    instance: dg.DagsterInstance,
    entries: dict[str, LedgerEntry] | None,
    failed_run_output_days: int,
    now: float,
) -> list[tuple[str, int]]:
    """Remove every run's step outputs that nothing will read; (run id, bytes freed) of each."""
    removed = []
    for outputs in runs_with_outputs(Path(instance.storage_directory())):
        if outputs_still_needed(instance, outputs, entries, failed_run_output_days, now):
            continue
        size = outputs.size_bytes()
        outputs.remove()
        removed.append((outputs.run_id, size))
    return removed


def _latest_materialization_run(instance: dg.DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))
    return event.run_id if event else None


def delete_old_runs(instance: dg.DagsterInstance, history_days: int, now: float) -> list[str]:
    """Delete finished runs created more than `history_days` ago (0: keep them all), with their
    event logs and their folder; the run of the latest materialization stays."""
    if history_days <= 0:
        return []
    old_runs = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=_FINISHED,
            created_before=datetime.fromtimestamp(now - history_days * SECONDS_PER_DAY, UTC),
        ),
        limit=MAX_RUNS_DELETED_PER_TICK + 1,
        ascending=True,
    )
    keep = _latest_materialization_run(instance)
    deleted = []
    for run in old_runs:
        if run.run_id == keep or len(deleted) >= MAX_RUNS_DELETED_PER_TICK:
            continue
        instance.delete_run(run.run_id)
        shutil.rmtree(Path(instance.storage_directory()) / run.run_id, ignore_errors=True)
        deleted.append(run.run_id)
    return deleted


def _ledger_entries(
    qdrant: QdrantResource, embedder: EmbedderResource, pipeline_state: PipelineStateResource
) -> dict[str, LedgerEntry] | None:
    """What the ledger records for the version runs load into (a new one during a rebuild)."""
    try:
        _, stamp = qdrant.read_stamp(embedder.model_name())
    except (StoreDamagedError, StoreUnreachableError):
        return None
    return pipeline_state.ledger().entries(stamp)


@dg.sensor(
    minimum_interval_seconds=RETENTION_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Removes the step outputs no re-execution will read (a successful run's at "
    "once, a failed run's once its files are loaded or refused since, or after "
    "BOOK_PIPELINE_FAILED_RUN_OUTPUT_DAYS) and runs older than BOOK_PIPELINE_RUN_HISTORY_DAYS.",
)
def run_retention_sensor(
    context: dg.SensorEvaluationContext,
    qdrant: QdrantResource,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateResource,
) -> dg.SkipReason:
    now = time.time()
    removed = remove_unneeded_outputs(
        context.instance,
        _ledger_entries(qdrant, embedder, pipeline_state),
        pipeline_state.failed_run_output_days,
        now,
    )
    for run_id, size in removed:
        context.log.info(f"removed the step outputs of run {run_id} ({size / 1e6:.1f} MB)")
    deleted = delete_old_runs(context.instance, pipeline_state.run_history_days, now)
    if deleted:
        context.log.info(f"deleted {len(deleted)} run(s) older than the run history's retention")
    return dg.SkipReason(
        f"removed the step outputs of {len(removed)} run(s), deleted {len(deleted)} old run(s)"
    )

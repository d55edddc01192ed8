"""Which runs are loading books: the one answer both sensors take.

A run loads books when its execution plan holds the load step of book_embeddings, whatever
started it: `fetch_data` (the quickstart's `dagster job execute`, new_book_files_sensor), the
implicit asset job `__ASSET_JOB` behind the UI's Materialize, `dagster asset materialize` and
`dg launch --assets`, or `fetch_data_celery` (defs/deploy_jobs.py). A job's name cannot tell:
the asset job's runs are named after no job of ours, and a run of it that only executes the
retrieval check loads nothing. The plan can, and Dagster stores it with every run it creates.

new_book_files_sensor leaves alone the files of every such run that has not finished, queued and
canceling ones included (a canceling run may still be writing); dead_run_sensor judges such a
run even before any of its processes has taken a lease (defs/dead_runs.py).
"""

import dagster as dg

from book_pipeline.defs.assets import book_embeddings
from book_pipeline.defs.ops import list_book_description_files, load_embeddings_to_vector_db

# The step key of a graph asset's op: the graph's name, then the op's.
LOAD_STEP_KEY = f"{book_embeddings.node_def.name}.{load_embeddings_to_vector_db.name}"

# Every status of a run that has not finished: it may still list, embed or load.
IN_PROGRESS_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.SUSPENDED,
]


def loads_books(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """The run's plan executes the load step."""
    if run.execution_plan_snapshot_id is None:
        return False  # a run stored without its plan (none Dagster creates): it runs no step
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return LOAD_STEP_KEY in plan.step_keys_to_execute


def loading_runs(
    instance: dg.DagsterInstance,
    statuses: list[dg.DagsterRunStatus] = IN_PROGRESS_STATUSES,
) -> list[dg.DagsterRun]:
    """The runs in one of `statuses` that load books, newest first."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=statuses))
    return [run for run in runs if loads_books(instance, run)]


def files_of_run(run: dg.DagsterRun) -> list[str] | None:
    """The files a loading run was asked to load; None for a run over every pending file."""
    ops = run.run_config.get("ops", {}).get(book_embeddings.node_def.name, {}).get("ops", {})
    listing = ops.get(list_book_description_files.name, {})
    return listing.get("config", {}).get("only_files")

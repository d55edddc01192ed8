"""run_retention_sensor's rules on real runs of fetch_data in a persistent instance: what a
re-execution from failure needs stays, the rest of the step outputs and old runs go."""

import time
from pathlib import Path

import dagster as dg

from book_pipeline.core.ingest.run_outputs import runs_with_outputs
from book_pipeline.defs.resources import EmbedderResource, PipelineStateResource
from book_pipeline.defs.retention import (
    SECONDS_PER_DAY,
    delete_old_runs,
    remove_unneeded_outputs,
    run_retention_sensor,
)
from book_pipeline_tests.support.data_folder import qdrant_in, recorded_entries
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.runs import fetch_data_job, openai_run_config
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

FAILED_RUN_OUTPUT_DAYS = 7
# A 400 cannot heal: the embed step fails at once, without step retries.
BAD_REQUEST = 400


def runs_keeping_outputs(instance: dg.DagsterInstance) -> set[str]:
    return {outputs.run_id for outputs in runs_with_outputs(Path(instance.storage_directory()))}


def openai_embedder() -> EmbedderResource:
    """The embedder the runs here use (`openai_run_config`), as the sensor is given it."""
    return EmbedderResource(provider="openai", openai_api_key="sk-test")


def retention_tick(instance: dg.DagsterInstance, data_dir: Path, now: float | None = None) -> None:
    entries = recorded_entries(data_dir)
    remove_unneeded_outputs(instance, entries, FAILED_RUN_OUTPUT_DAYS, now or time.time())


def run_fetch_data(
    instance: dg.DagsterInstance,
    run_config: dict,
    reexecute: str | None = None,
) -> dg.DagsterRun:
    options = dg.ReexecutionOptions.from_failure(reexecute, instance) if reexecute else None
    with dg.execute_job(
        dg.reconstructable(fetch_data_job),
        instance,
        run_config=run_config,
        reexecution_options=options,
    ) as result:
        return result.dagster_run


def failed_first_run(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> dg.DagsterRun:
    """Two files; the endpoint refuses the first embedding request, so one embed step fails and
    nothing is loaded."""
    write_synthetic_books(books_dir, files=2, books_per_file=2)
    with embeddings_server(EmbeddingsServerState(failures_to_inject=[BAD_REQUEST])) as url:
        failed = run_fetch_data(instance, openai_run_config(books_dir, data_dir, url))
    assert failed.status == dg.DagsterRunStatus.FAILURE
    return failed


def test_a_successful_run_leaves_no_step_outputs(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=2)
    with embeddings_server(EmbeddingsServerState()) as url:
        run = run_fetch_data(instance, openai_run_config(books_dir, data_dir, url))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert runs_keeping_outputs(instance) == {run.run_id}

    retention_tick(instance, data_dir)

    assert runs_keeping_outputs(instance) == set()
    # The run's record and logs stay: only the outputs are gone.
    assert instance.get_run_by_id(run.run_id) is not None


def test_a_failed_runs_outputs_stay_for_its_reexecution_then_go(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    failed = failed_first_run(instance, books_dir, data_dir)
    retention_tick(instance, data_dir)
    assert runs_keeping_outputs(instance) == {failed.run_id}

    with embeddings_server(EmbeddingsServerState()) as url:
        reexecution = run_fetch_data(
            instance, openai_run_config(books_dir, data_dir, url), reexecute=failed.run_id
        )
    # It read the first run's parsed files: they were still there.
    assert reexecution.status == dg.DagsterRunStatus.SUCCESS
    _, stamp = qdrant_in(data_dir).read_stamp(openai_embedder().model_name())
    assert stamp is not None
    assert sum(entry.books for entry in recorded_entries(data_dir).values()) == 4

    retention_tick(instance, data_dir)
    assert runs_keeping_outputs(instance) == set()


def test_a_later_run_that_loads_the_files_clears_a_failed_runs_outputs(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    failed = failed_first_run(instance, books_dir, data_dir)
    with embeddings_server(EmbeddingsServerState()) as url:
        later = run_fetch_data(instance, openai_run_config(books_dir, data_dir, url))
    assert later.status == dg.DagsterRunStatus.SUCCESS
    assert runs_keeping_outputs(instance) == {failed.run_id, later.run_id}

    retention_tick(instance, data_dir)

    assert runs_keeping_outputs(instance) == set()


def test_a_failed_runs_outputs_go_after_the_retention_period(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    failed = failed_first_run(instance, books_dir, data_dir)
    a_day_short = time.time() + (FAILED_RUN_OUTPUT_DAYS - 1) * SECONDS_PER_DAY
    retention_tick(instance, data_dir, now=a_day_short)
    assert runs_keeping_outputs(instance) == {failed.run_id}

    retention_tick(instance, data_dir, now=time.time() + FAILED_RUN_OUTPUT_DAYS * SECONDS_PER_DAY)

    assert runs_keeping_outputs(instance) == set()


def test_old_runs_are_deleted_but_the_latest_materialization(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    with embeddings_server(EmbeddingsServerState()) as url:
        config = openai_run_config(books_dir, data_dir, url)
        first = run_fetch_data(instance, config)
        write_synthetic_books(books_dir, files=1, books_per_file=2, first_file=1)
        latest = run_fetch_data(instance, config)
    in_40_days = time.time() + 40 * SECONDS_PER_DAY

    assert delete_old_runs(instance, history_days=0, now=in_40_days) == []
    assert delete_old_runs(instance, history_days=30, now=in_40_days) == [first.run_id]

    assert instance.get_run_by_id(first.run_id) is None
    assert not (Path(instance.storage_directory()) / first.run_id).exists()
    assert instance.get_run_by_id(latest.run_id) is not None


def test_the_sensor_removes_a_successful_runs_outputs(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    with embeddings_server(EmbeddingsServerState()) as url:
        run = run_fetch_data(instance, openai_run_config(books_dir, data_dir, url))
    resources = {
        "qdrant": qdrant_in(data_dir),
        "embedder": openai_embedder(),
        "pipeline_state": PipelineStateResource(data_dir=str(data_dir)),
    }
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = run_retention_sensor(context)

    assert "removed the step outputs of 1 run(s)" in str(result.skip_message)
    assert run.run_id not in runs_keeping_outputs(instance)

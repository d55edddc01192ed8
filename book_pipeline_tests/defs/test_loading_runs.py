"""One answer to "is this run loading books", against a real instance, and under a real daemon:
new_book_files_sensor starts no second run for files a Materialize is loading."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.definitions import defs
from book_pipeline.defs.loading_runs import IN_PROGRESS_STATUSES, files_of_run, loading_runs
from book_pipeline.defs.sensors import run_config_for
from book_pipeline_tests.defs.test_sensors import sensor_ticks, wait_for
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.runs import start_daemon
from book_pipeline_tests.support.services import stop_process_group
from book_pipeline_tests.support.synthetic_books import write_synthetic_books
from book_pipeline_tests.test_faults import loaded_files

RETRIEVAL_CHECK = dg.AssetCheckKey(dg.AssetKey("book_embeddings"), "retrieval_sanity")


def asset_job() -> dg.JobDefinition:
    """The implicit asset job the UI's Materialize and `dagster asset materialize` run."""
    return defs.resolve_implicit_global_asset_job_def()


def loading_jobs() -> list[dg.JobDefinition]:
    jobs = [defs.resolve_job_def("fetch_data"), asset_job()]
    try:
        jobs.append(defs.resolve_job_def("fetch_data_celery"))
    except dg.DagsterInvariantViolationError:
        pytest.fail("fetch_data_celery is missing: install the deploy extra")
    return jobs


@pytest.mark.parametrize(
    "status",
    [status for status in IN_PROGRESS_STATUSES if status != dg.DagsterRunStatus.QUEUED],
)
def test_every_job_that_loads_counts_in_every_status_in_progress(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus
) -> None:
    """QUEUED is left to the run queue (a queued run must name its code location)."""
    loading = [
        instance.create_run_for_job(job, status=status, run_config=run_config_for([job.name]))
        for job in loading_jobs()
    ]
    # Not loading: another job, the asset job running only the retrieval check, a finished run.
    instance.create_run_for_job(defs.resolve_job_def("query_data"), status=status)
    check_only = asset_job().get_subset(
        asset_selection=set(), asset_check_selection={RETRIEVAL_CHECK}
    )
    instance.create_run_for_job(check_only, status=status)
    instance.create_run_for_job(asset_job(), status=dg.DagsterRunStatus.SUCCESS)

    found = loading_runs(instance)

    assert sorted(run.run_id for run in found) == sorted(run.run_id for run in loading)
    assert sorted(file for run in found for file in files_of_run(run) or []) == sorted(
        job.name for job in loading_jobs()
    )


def test_a_materialize_in_progress_holds_its_files_from_the_sensor_under_a_real_daemon(
    tmp_path: Path, books_dir: Path, data_dir: Path
) -> None:
    files = write_synthetic_books(books_dir, files=3, books_per_file=4)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    endpoint = EmbeddingsServerState(dimensions=64)
    endpoint.released.clear()
    with embeddings_server(endpoint) as base_url:
        environment = {
            "DAGSTER_HOME": str(dagster_home),
            "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
            "BOOK_PIPELINE_DATA_DIR": str(data_dir),
            "BOOK_PIPELINE_EMBEDDER": "openai",
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "sk-test",
            "BOOK_PIPELINE_SETTLE_SECONDS": "0",
            "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS": "1",
        }
        # The CLI's Materialize: the asset job, run in the command's own process.
        materialize = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster"),
                *("asset", "materialize", "--select", "book_embeddings"),
                *("-m", "book_pipeline.definitions"),
            ],
            env={**os.environ, **environment},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        daemon = None
        try:
            wait_for(endpoint.held.is_set, 180, "the Materialize's embedding request")
            daemon = start_daemon(dagster_home, tmp_path, environment, tmp_path / "daemon.log")
            with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
                wait_for(lambda: sensor_ticks(instance) >= 3, 180, "three sensor ticks")
                runs = instance.get_runs()
                assert [run.job_name for run in runs] == [asset_job().name]
                materializing = runs[0]
                assert materializing.status == dg.DagsterRunStatus.STARTED

                endpoint.released.set()
                output, _ = materialize.communicate(timeout=300)
                assert materialize.returncode == 0, output[-3000:]
                ticks = sensor_ticks(instance)
                wait_for(lambda: sensor_ticks(instance) >= ticks + 2, 180, "two more ticks")
                assert [run.run_id for run in instance.get_runs()] == [materializing.run_id]
        finally:
            endpoint.released.set()
            if daemon is not None:
                stop_process_group(daemon, timeout=10)
            stop_process_group(materialize, timeout=10)
    assert loaded_files(data_dir) == {path.name: 4 for path in files}

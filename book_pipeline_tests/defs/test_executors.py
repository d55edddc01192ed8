"""The executors hold the run's lease in the process that orchestrates the run, for its whole
life: a Celery run whose steps wait in the broker's queue, with no worker to take them, is alive
for as long as that process lives, and dead once it is killed (a real instance, a real Redis)."""

import os
import signal
import time
from pathlib import Path

import dagster as dg

from book_pipeline.core.runtime.run_leases import Lease, read_leases
from book_pipeline.defs.dead_runs import dead_runs
from book_pipeline.defs.resources import PipelineStateResource
from book_pipeline_tests.support.runs import dagster_job_execute
from book_pipeline_tests.support.services import stop_process_group, wait_until
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

GRACE = 60.0
# Judged long after the grace period: only a live process keeps a run alive then.
AN_HOUR_LATER = 3600.0


def live_leases(state_folder: Path, run_id: str) -> list[Lease]:
    return [lease for lease in read_leases(state_folder, run_id) if not lease.ended]


def started(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_runs()
    return bool(runs) and runs[0].status == dg.DagsterRunStatus.STARTED


def dead_run_ids(instance: dg.DagsterInstance, state_folder: Path) -> list[str]:
    judged = dead_runs(instance, state_folder, time.time() + AN_HOUR_LATER, GRACE)
    return [run.run_id for run, _ in judged]


def test_a_celery_run_waiting_in_the_queue_lives_as_long_as_its_orchestrator(
    tmp_path: Path, books_dir: Path, data_dir: Path, redis_url: str
) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    state_folder = PipelineStateResource(data_dir=str(data_dir)).folder
    environment = {
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
        "BOOK_PIPELINE_CELERY_BROKER": redis_url,
        "BOOK_PIPELINE_CELERY_BACKEND": redis_url,
    }
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        orchestrator = dagster_job_execute(dagster_home, tmp_path, environment, "fetch_data_celery")
        try:
            wait_until(lambda: started(instance), "the Celery run's start", timeout=180)
            [run] = instance.get_runs()
            wait_until(
                lambda: bool(live_leases(state_folder, run.run_id)),
                "a lease on the Celery run (no worker: its steps wait in the queue)",
                timeout=30,
            )
            [lease] = live_leases(state_folder, run.run_id)
            assert lease.holder.pid == orchestrator.pid
            time.sleep(1)  # the orchestrator polls the queue; no worker takes a step
            assert not instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
            assert dead_run_ids(instance, state_folder) == []
        finally:
            os.killpg(orchestrator.pid, signal.SIGKILL)
            stop_process_group(orchestrator, timeout=10)

        [(dead, verdict)] = dead_runs(instance, state_folder, time.time() + AN_HOUR_LATER, GRACE)
        assert dead.run_id == run.run_id
        assert f"none of its processes is running: {orchestrator.pid}" in verdict.reason

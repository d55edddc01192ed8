"""The leases fail_dead_runs keeps and forgets, against a real instance; the daemon test
(book_pipeline_tests/test_dead_runs.py) covers the failing itself."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from book_pipeline.core.runtime.run_leases import (
    ProcessIdentity,
    RunLease,
    leases_folder,
    runs_with_leases,
)
from book_pipeline.definitions import defs
from book_pipeline.defs.dead_runs import forget_ended_runs

GRACE = 60.0


def a_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    return instance.create_run_for_job(defs.resolve_job_def("fetch_data"), status=status).run_id


def a_dead_process_lease(state_folder: Path, run_id: str, last_seen: float) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    holder = ProcessIdentity.of(child.pid)
    child.wait()
    path = leases_folder(state_folder) / run_id / f"{holder.host}-{holder.pid}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": run_id, **holder.__dict__}))
    os.utime(path, (last_seen, last_seen))


def test_the_leases_of_ended_runs_are_forgotten_and_live_ones_kept(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    finished = a_run(instance, dg.DagsterRunStatus.SUCCESS)
    running = a_run(instance, dg.DagsterRunStatus.STARTED)
    now = time.time()
    a_dead_process_lease(tmp_path, finished, now)
    a_dead_process_lease(tmp_path, running, now)
    # Runs another instance (another DAGSTER_HOME on the same data folder) knows of.
    a_dead_process_lease(tmp_path, "elsewhere-dead", now - GRACE - 1)
    live_elsewhere = RunLease(tmp_path, "elsewhere-live", GRACE)
    live_elsewhere.start()
    try:
        forget_ended_runs(instance, tmp_path, now, GRACE)
    finally:
        live_elsewhere.end()

    assert sorted(runs_with_leases(tmp_path)) == sorted([running, "elsewhere-live"])

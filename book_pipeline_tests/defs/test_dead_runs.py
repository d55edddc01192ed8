"""The leases fail_dead_runs keeps and forgets, against a real instance; the daemon test
(book_pipeline_tests/test_dead_runs.py) covers the failing itself."""

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import (
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)

from book_pipeline.core.runtime.run_leases import (
    ProcessIdentity,
    RunLease,
    leases_folder,
    runs_with_leases,
)
from book_pipeline.definitions import defs
from book_pipeline.defs.dead_runs import failure_alerts_ready, forget_ended_runs

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


# Where the code imports Dagster's private names from (checked against Dagster 1.13.27).
PRIVATE_DAGSTER_NAMES = {
    "dagster._core.scheduler.instigation": [  # defs/dead_runs.py, at run time
        "InstigatorStatus",
        "InstigatorType",
        "SensorInstigatorData",
    ],
    # defs/executors.py, for type checking only
    "dagster._core.execution.context.system": ["PlanOrchestrationContext"],
    "dagster._core.execution.plan.plan": ["ExecutionPlan"],
    "dagster._core.execution.retries": ["RetryMode"],
    "dagster._core.execution.step_dependency_config": ["StepDependencyConfig"],
}


@pytest.mark.parametrize("module_name", sorted(PRIVATE_DAGSTER_NAMES))
def test_the_private_dagster_names_are_where_they_were_checked(module_name: str) -> None:
    """If this fails, Dagster moved or changed a private name the code uses: find it again (or a
    public API that now serves), and update the import and its comment."""
    module = importlib.import_module(module_name)
    for name in PRIVATE_DAGSTER_NAMES[module_name]:
        assert hasattr(module, name), f"Dagster {dg.__version__} moved {module_name}.{name}"
        assert not hasattr(dg, name), f"dagster {dg.__version__} exports {name}: use it"


def test_the_failure_sensors_state_is_read_as_dagster_stores_it(
    instance: dg.DagsterInstance,
) -> None:
    """What failure_alerts_ready reads of the private names: a sensor's status and cursor."""
    assert {status.name for status in InstigatorStatus} >= {"RUNNING", "STOPPED"}
    assert SensorInstigatorData(cursor="seen").cursor == "seen"
    assert instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) == []
    assert not failure_alerts_ready(instance)

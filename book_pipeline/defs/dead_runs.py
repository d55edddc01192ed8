"""Runs whose processes died are failed, so that nothing waits for them forever.

A run killed by SIGKILL, the OOM killer, a power cut or a SIGBUS stays STARTED in Dagster's
instance: nothing of it is left to report its end, and Dagster's run monitoring does not watch a
run started by `dagster job execute`. Each process of a run holds a lease in the state folder
(`PipelineStateResource`, core/runtime/run_leases.py); a run that still claims to be STARTED
while none of its leases lives, and that has shown no life for the grace period, is marked
failed through the instance. That is a run failure like any other: the failure sensors
(defs/alerts.py) alert on it, and `new_book_files_sensor` no longer counts it as loading its
files. Both
`dead_run_sensor` and `new_book_files_sensor` (defs/sensors.py) call `fail_dead_runs`.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

# Private: no public Dagster API tells a sensor's status and cursor (checked against Dagster
# 1.13.27: `dagster` exports no instigator state, and SensorEvaluationContext knows only its own
# sensor). failure_alerts_ready needs both, for sensors other than the one ticking.
# defs/test_dead_runs.py fails, naming this import, if Dagster moves or changes these names.
from dagster._core.scheduler.instigation import (
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)

from book_pipeline.core.runtime.run_leases import (
    RunVerdict,
    forget_run,
    judge_run,
    read_leases,
    runs_with_leases,
)
from book_pipeline.defs.alerts import ALERT_SENSOR_NAME, EMAIL_SENSOR_NAME
from book_pipeline.defs.loading_runs import loads_books
from book_pipeline.defs.resources import PipelineStateResource

# The statuses of a run whose processes should be running: a queued run has none yet.
_RUNNING_STATUSES = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def failure_alerts_ready(instance: dg.DagsterInstance) -> bool:
    """The failure sensors have started watching: a run failure sensor's first tick sets its
    cursor past every failure already stored, so a run failed before it would never be alerted
    on (a daemon started for the first time after a crash). A sensor stopped by hand waits for
    nothing."""
    states = {
        state.instigator_name: state
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if state.instigator_name in (ALERT_SENSOR_NAME, EMAIL_SENSOR_NAME)
    }
    alert = states.get(ALERT_SENSOR_NAME)
    if alert is None:
        return False
    return all(
        state.status == InstigatorStatus.STOPPED
        or (
            isinstance(state.instigator_data, SensorInstigatorData) and state.instigator_data.cursor
        )
        for state in states.values()
    )


def dead_runs(
    instance: dg.DagsterInstance, state_folder: Path, now: float, grace: float
) -> Iterator[tuple[dg.DagsterRun, RunVerdict]]:
    """The running runs that died, each with the verdict that says so: a run that loads books
    (defs/loading_runs.py) is judged even when none of its processes took a lease; another job's
    run only by the leases it took."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_RUNNING_STATUSES)):
        leases = read_leases(state_folder, run.run_id)
        if not leases and not loads_books(instance, run):
            continue  # another job's run: nothing here says whether it lives
        record = instance.get_run_record_by_id(run.run_id)
        if record is None or record.start_time is None:
            continue
        verdict = judge_run(leases, record.start_time, now, grace)
        if not verdict.alive:
            yield run, verdict


def fail_dead_runs(
    instance: dg.DagsterInstance, pipeline_state: PipelineStateResource, now: float | None = None
) -> list[str]:
    """Mark failed every STARTED run that died (canceled, one that was CANCELING); the ids of
    those marked. Forgets the leases of runs that have ended. Marks nothing until the failure
    alerts are ready to tell of it."""
    now = time.time() if now is None else now
    if not failure_alerts_ready(instance):
        return []
    state_folder = pipeline_state.folder
    grace = pipeline_state.dead_run_grace_seconds
    forget_ended_runs(instance, state_folder, now, grace)
    marked = []
    for run, verdict in list(dead_runs(instance, state_folder, now, grace)):
        # Read again: the run may have ended, or another sensor marked it, since the listing.
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != run.status:
            continue
        if current.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(current, verdict.failure_message())
        else:
            instance.report_run_failed(current, verdict.failure_message())
        forget_run(state_folder, run.run_id)
        marked.append(run.run_id)
    return marked


def forget_ended_runs(
    instance: dg.DagsterInstance, state_folder: Path, now: float, grace: float
) -> None:
    """Remove the leases of runs that have ended. Read run by run, after the leases: a run that
    starts during the tick keeps its new lease. A run this instance does not know (another
    instance sharing the data folder) loses its leases only once none of them lives."""
    for run_id in runs_with_leases(state_folder):
        run = instance.get_run_by_id(run_id)
        if run is not None:
            ended = run.is_finished
        else:
            ended = not judge_run(read_leases(state_folder, run_id), 0.0, now, grace).alive
        if ended:
            forget_run(state_folder, run_id)

"""Runs that die are failed, alerted on and loaded again under a real daemon; slow runs are not.

One `dagster-daemon` session (its sensors tick every second, the grace period is 2 s) goes
through the whole story, because a daemon costs seconds to start on 2 cores:

1. A `dagster job execute` run dies by SIGKILL in its embed step (a fail point) before the
   daemon runs: it stays STARTED, as a CLI run does, since no run monitoring watches it.
2. The daemon starts: the run is marked failed with the process's death in the message, the
   alert reaches the webhook, and new_book_files_sensor requests the files again.
3. That run's embedding request is held by the endpoint (a slow embedder): sensor ticks long
   past the grace period leave it STARTED, since its process lives.
4. The test SIGKILLs that run's process (found through its lease) while it waits: the run is
   failed (by the code server that launched it, which watches its child, or else by the dead
   run check) and alerted on, and the next run loads every book, once.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.core.runtime.fail_points import BEFORE_EMBEDDING
from book_pipeline.core.runtime.run_leases import read_leases
from book_pipeline.core.settings import VARIABLES
from book_pipeline_tests.support.loopback_http import Webhook, webhook_server
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.runs import dagster_job_execute
from book_pipeline_tests.support.services import stop_process_group, wait_until
from book_pipeline_tests.support.synthetic_books import write_synthetic_books
from book_pipeline_tests.test_faults import assert_exactly_one_point_per_book, loaded_files

GRACE_SECONDS = 2
DAEMON_TIMEOUT_SECONDS = 180
DIED = "the run's process died"


def fetch_data_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Oldest first."""
    return instance.get_runs(filters=dg.RunsFilter(job_name="fetch_data"))[::-1]


def status_of(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def alerted_runs(webhook: Webhook) -> dict[str, str]:
    return {body["run_id"]: body["text"] for _, _, body in webhook.posts}


def death_explanations(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What the run's log says of its process's death: ours, or Dagster's when the code server
    that launched the run saw its process end first."""
    messages = [entry.message for entry in instance.all_logs(run_id)]
    return [
        message
        for message in messages
        if DIED in message or "was terminated by signal 9 (SIGKILL)" in message
    ]


def dead_run_sensor_ticks(instance: dg.DagsterInstance) -> list[float]:
    """When the daemon's finished evaluations of dead_run_sensor began, newest first."""
    [state] = [
        state
        for state in instance.all_instigator_state()
        if state.instigator_name == "dead_run_sensor"
    ]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    return [tick.timestamp for tick in ticks if tick.status.value != "STARTED"]


def run_pid(data_dir: Path, run_id: str) -> int:
    [lease] = [lease for lease in read_leases(data_dir, run_id) if not lease.ended]
    return lease.holder.pid


def wait_for(condition: Callable[[], bool], what: str, daemon: subprocess.Popen) -> None:
    def ready() -> bool:
        assert daemon.poll() is None, "the daemon died"
        return condition()

    wait_until(ready, what, timeout=DAEMON_TIMEOUT_SECONDS)


@pytest.mark.slow
def test_dead_runs_are_failed_alerted_and_loaded_again_and_a_slow_run_is_not_failed(
    tmp_path: Path, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=3, books_per_file=20)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    endpoint = EmbeddingsServerState(dimensions=64)
    with embeddings_server(endpoint) as base_url, webhook_server() as webhook:
        environment = {
            "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
            "BOOK_PIPELINE_DATA_DIR": str(data_dir),
            "BOOK_PIPELINE_EMBEDDER": "openai",
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "sk-test",
            "BOOK_PIPELINE_SETTLE_SECONDS": "0",
            "BOOK_PIPELINE_STEP_RETRIES": "0",
            "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS": "1",
            VARIABLES.dead_run_grace_seconds.name: str(GRACE_SECONDS),
            VARIABLES.alert_webhook_url.name: webhook.url,
        }
        # 1. A CLI run dies mid-embed and stays STARTED.
        killed = dagster_job_execute(
            dagster_home, tmp_path, {**environment, VARIABLES.fail_point.name: BEFORE_EMBEDDING}
        )
        output, _ = killed.communicate(timeout=300)
        assert killed.returncode == -signal.SIGKILL, output[-3000:]
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            [cli_run] = fetch_data_runs(instance)
            assert cli_run.status == dg.DagsterRunStatus.STARTED

            endpoint.released.clear()
            daemon = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "dagster-daemon"),
                    *("run", "-m", "book_pipeline.definitions"),
                ],
                env={**os.environ, "DAGSTER_HOME": str(dagster_home), **environment},
                cwd=tmp_path,
                stdout=(tmp_path / "daemon.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                # 2. The daemon fails it, alerts, and asks for its files again.
                wait_for(lambda: cli_run.run_id in alerted_runs(webhook), "alert 1", daemon)
                assert status_of(instance, cli_run.run_id) == dg.DagsterRunStatus.FAILURE
                assert DIED in alerted_runs(webhook)[cli_run.run_id]
                assert "last seen at" in alerted_runs(webhook)[cli_run.run_id]

                # 3. The next run waits on the held endpoint: slow, not dead.
                wait_for(endpoint.held.is_set, "the second run's embedding request", daemon)
                slow_run = fetch_data_runs(instance)[1]
                held_since = time.time()
                wait_for(
                    lambda: max(dead_run_sensor_ticks(instance)) > held_since + 2 * GRACE_SECONDS,
                    "a dead_run_sensor tick well past the grace period",
                    daemon,
                )
                assert status_of(instance, slow_run.run_id) == dg.DagsterRunStatus.STARTED

                # 4. Killed while it waits: failed, alerted, and loaded by the next run.
                os.kill(run_pid(data_dir, slow_run.run_id), signal.SIGKILL)
                endpoint.released.set()
                wait_for(lambda: slow_run.run_id in alerted_runs(webhook), "alert 2", daemon)
                assert status_of(instance, slow_run.run_id) == dg.DagsterRunStatus.FAILURE
                assert death_explanations(instance, slow_run.run_id)
                wait_for(
                    lambda: (
                        len(fetch_data_runs(instance)) == 3
                        and fetch_data_runs(instance)[2].status == dg.DagsterRunStatus.SUCCESS
                    ),
                    "the third run's success",
                    daemon,
                )
            finally:
                endpoint.released.set()
                stop_process_group(daemon, timeout=10)
            assert [run.status for run in fetch_data_runs(instance)] == [
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.SUCCESS,
            ]
    assert_exactly_one_point_per_book(data_dir, books=60)
    assert loaded_files(data_dir) == {path.name: 20 for path in books_dir.iterdir()}

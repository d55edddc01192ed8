"""fetch_data as the tests run it: in process, or as a user runs `dagster` and `dg` commands."""

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from book_pipeline.definitions import defs
from book_pipeline.defs.resources import folders_run_config


def fetch_data_run_config(books_dir: Path, data_dir: Path, **embedder: Any) -> dict[str, Any]:
    resources = folders_run_config(books_dir, data_dir)
    if embedder:
        resources["embedder"]["config"].update(embedder)
    return {"resources": resources}


def openai_run_config(
    books_dir: Path, data_dir: Path, base_url: str, **embedder: Any
) -> dict[str, Any]:
    """`fetch_data_run_config` embedding through an OpenAI-compatible server at `base_url`."""
    return fetch_data_run_config(
        books_dir,
        data_dir,
        provider="openai",
        openai_base_url=base_url,
        openai_api_key="sk-test",
        **embedder,
    )


def fetch_data_job() -> dg.JobDefinition:
    return defs.resolve_job_def("fetch_data")


def steps_that_ran(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """The run's steps of the book_embeddings graph, by outcome: 'success', 'failure' and
    'skipped' (a step whose input was not produced, e.g. a refused file's embed step)."""
    outcomes: dict[str, set[str]] = {"success": set(), "failure": set(), "skipped": set()}
    for event_type, outcome in (
        (dg.DagsterEventType.STEP_SUCCESS, "success"),
        (dg.DagsterEventType.STEP_FAILURE, "failure"),
        (dg.DagsterEventType.STEP_SKIPPED, "skipped"),
    ):
        for entry in instance.all_logs(run_id, of_type=event_type):
            assert entry.dagster_event is not None
            step_key = entry.dagster_event.step_key
            if step_key.startswith("book_embeddings."):
                outcomes[outcome].add(step_key.removeprefix("book_embeddings."))
    return outcomes


@dataclass(frozen=True)
class SampleLoad:
    data_dir: Path
    result: dg.ExecuteInProcessResult


def dagster_job_execute(
    dagster_home: Path, cwd: Path, environment: dict[str, str], job: str = "fetch_data"
) -> subprocess.Popen:
    """`dagster job execute` in its own process (and process group), as a user would run it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            *("job", "execute", "-m", "book_pipeline.definitions", "-j", job),
        ],
        env={**os.environ, "DAGSTER_HOME": str(dagster_home), **environment},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_project_command(
    command: str, dagster_home: Path, cwd: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A command line of this venv (`dagster ...`, `dg ...`) run to completion as a user would,
    with the venv active (as `dg` expects) and its own instance; stdout and stderr together."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    executable, *arguments = shlex.split(command)
    return subprocess.run(
        [str(venv_bin / executable), *arguments],
        env={
            **os.environ,
            "VIRTUAL_ENV": str(venv_bin.parent),
            "DAGSTER_HOME": str(dagster_home),
            **environment,
        },
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """The run's failed steps (without the graph's prefix) and their Failure's description."""
    messages = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.get_dagster_event()
        user_data = event.step_failure_data.user_failure_data
        assert user_data is not None and event.step_key is not None
        messages[event.step_key.removeprefix("book_embeddings.")] = user_data.description
    return messages


def materialization_metadata(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))
    assert event is not None and event.asset_materialization is not None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def start_daemon(
    dagster_home: Path, cwd: Path, environment: dict[str, str], log_path: Path
) -> subprocess.Popen:
    """`dagster-daemon run` on the code location, in its own session (stop it with
    services.stop_process_group); its output goes to `log_path`."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                *("run", "-m", "book_pipeline.definitions"),
            ],
            env={**os.environ, "DAGSTER_HOME": str(dagster_home), **environment},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

"""Every way in, timed on the same files in one run: the UI's Materialize, `dagster asset
materialize`, `dg launch --assets`, `dg launch --job` and `dagster job execute -j fetch_data`.

    python bench/entry_points_benchmark.py --files 20 --books-per-file 10 --rounds 3

One persistent instance (a temporary DAGSTER_HOME with deploy/local/dagster.yaml, as
docs/operations.md's UI section has it) serves them all. The commands run as users type them, from
the project root, with the folders in BOOK_PIPELINE_BOOKS_DIR and BOOK_PIPELINE_DATA_DIR. The UI's
Materialize is the webserver's own GraphQL `launchRun` of the implicit asset job with
book_embeddings and its check selected, as the button sends it, on a `dagster dev` started first
(its start-up is not timed); the run goes through the queue, the daemon and a run worker as a
click's would. Every run gets a fresh data folder, so each parses, embeds and loads every file (no
cache, no ledger). The entry points take turns, round after round, and the medians are compared.

Printed per entry point: the median wall time (the command from start to exit; for the UI, from
the launch request until the run is seen finished) and the run's own median duration from the
instance (RUN_START to RUN_SUCCESS, without process start-up), each also as a ratio to
`dagster job execute`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the server helpers live with the tests

from deploy_benchmark import last_run_seconds, run_command  # noqa: E402

from book_pipeline.defs.resources import folders_run_config  # noqa: E402
from book_pipeline_tests.support.services import free_port, stop_process_group, wait_until  # noqa: E402
from book_pipeline_tests.support.synthetic_books import write_synthetic_books  # noqa: E402

VENV_BIN = Path(sys.executable).parent
BASELINE = "dagster job execute -j fetch_data"
COMMANDS = {
    BASELINE: "dagster job execute -m book_pipeline.definitions -j fetch_data",
    "dagster asset materialize": "dagster asset materialize --select book_embeddings "
    "-m book_pipeline.definitions",
    "dg launch --assets": "dg launch --assets book_embeddings",
    "dg launch --job": "dg launch --job fetch_data",
}
UI_MATERIALIZE = "UI Materialize (GraphQL launchRun)"
ASSET_JOB = "__ASSET_JOB"  # Dagster's implicit asset job
JOB_OF = {
    command: "fetch_data" if "fetch_data" in command else ASSET_JOB for command in COMMANDS.values()
}
RUN_TIMEOUT_SECONDS = 600

LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass(frozen=True)
class Timing:
    wall_seconds: float
    run_seconds: float


class Webserver:
    def __init__(self, url: str) -> None:
        self.url = url

    def graphql(self, query: str, variables: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if "errors" in answer:
            raise SystemExit(f"GraphQL error: {answer['errors']}")
        return answer["data"]

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2):
                return True
        except OSError:
            return False

    def materialize(self, books_dir: Path, data_dir: Path) -> None:
        """What the Materialize button sends: the implicit asset job, the asset and its check."""
        selector = {
            "repositoryLocationName": "book_pipeline",
            "repositoryName": "__repository__",
            "jobName": ASSET_JOB,
            "assetSelection": [{"path": ["book_embeddings"]}],
            "assetCheckSelection": [
                {"assetKey": {"path": ["book_embeddings"]}, "name": "retrieval_sanity"}
            ],
        }
        launched = self.graphql(
            LAUNCH_RUN,
            {
                "executionParams": {
                    "selector": selector,
                    "runConfigData": {"resources": folders_run_config(books_dir, data_dir)},
                    "mode": "default",
                }
            },
        )["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise SystemExit(f"the launch failed: {launched}")
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while True:
            status = self.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
            if status in FINISHED:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run_id} did not finish in {RUN_TIMEOUT_SECONDS} s")
            time.sleep(0.1)
        if status != "SUCCESS":
            raise SystemExit(f"run {run_id} ended {status}")


@contextmanager
def dagster_dev(environment: dict[str, str], log: Path) -> Iterator[Webserver]:
    webserver = Webserver(f"http://127.0.0.1:{free_port()}")
    port = webserver.url.rsplit(":", 1)[1]
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(VENV_BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", port],
            env=environment,
            cwd=ROOT,  # workspace.yaml: the code location "book_pipeline"
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(webserver.answers, "dagster dev", timeout=180)
            yield webserver
        finally:
            stop_process_group(process, timeout=5)


def time_command(
    command: str, environment: dict[str, str], instance: dg.DagsterInstance, log: Path
) -> Timing:
    executable, *arguments = command.split()
    # From the project root, where `dg` finds the project.
    wall = run_command([str(VENV_BIN / executable), *arguments], environment, log, cwd=ROOT)
    return Timing(wall, last_run_seconds(instance, JOB_OF[command]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--books-per-file", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="entry_points_benchmark_"))
    try:
        books_dir = work / "books"
        books_dir.mkdir()
        write_synthetic_books(books_dir, arguments.files, arguments.books_per_file)
        dagster_home = work / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(ROOT / "deploy" / "local" / "dagster.yaml", dagster_home / "dagster.yaml")
        environment = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "VIRTUAL_ENV": str(VENV_BIN.parent),  # as activated, which `dg` expects
            # dagster dev's own sensor must not load anything: its folder stays empty.
            "BOOK_PIPELINE_BOOKS_DIR": str(work / "no_books"),
            "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS": "3600",
        }
        (work / "no_books").mkdir()
        timings: dict[str, list[Timing]] = {name: [] for name in [*COMMANDS, UI_MATERIALIZE]}
        with (
            dg.DagsterInstance.from_config(str(dagster_home)) as instance,
            dagster_dev(environment, work / "dagster_dev.log") as webserver,
        ):
            runs = 0

            def fresh_data_dir() -> Path:
                nonlocal runs
                runs += 1
                return work / f"data_{runs}"

            entry_points: dict[str, Callable[[], Timing]] = {
                name: lambda command=command: time_command(
                    command,
                    {
                        **environment,
                        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
                        "BOOK_PIPELINE_DATA_DIR": str(fresh_data_dir()),
                    },
                    instance,
                    work / "command.log",
                )
                for name, command in COMMANDS.items()
            }

            def ui_materialize() -> Timing:
                started = time.perf_counter()
                webserver.materialize(books_dir, fresh_data_dir())
                return Timing(time.perf_counter() - started, last_run_seconds(instance, ASSET_JOB))

            entry_points[UI_MATERIALIZE] = ui_materialize
            for round_number in range(1, arguments.rounds + 1):
                for name, entry_point in entry_points.items():
                    timing = entry_point()
                    timings[name].append(timing)
                    print(
                        f"round {round_number}: {name}: {timing.wall_seconds:.2f} s wall, "
                        f"run {timing.run_seconds:.2f} s",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def medians(name: str) -> tuple[float, float]:
        return (
            statistics.median(t.wall_seconds for t in timings[name]),
            statistics.median(t.run_seconds for t in timings[name]),
        )

    base_wall, base_run = medians(BASELINE)
    print(
        f"\n{arguments.files} files x {arguments.books_per_file} books, "
        f"median of {arguments.rounds} interleaved round(s):"
    )
    print(f"{'entry point':<38} {'wall':>8} {'/ job':>7} {'run':>8} {'/ job':>7}")
    for name in timings:
        wall, run = medians(name)
        print(
            f"{name:<38} {wall:>7.2f}s {wall / base_wall:>6.2f}x {run:>7.2f}s "
            f"{run / base_run:>6.2f}x"
        )


if __name__ == "__main__":
    main()

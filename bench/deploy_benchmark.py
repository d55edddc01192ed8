"""fetch_data in-process against fetch_data_celery on Celery workers, on this machine.

    python bench/deploy_benchmark.py --files 200 --books-per-file 10 --concurrency 2 --repeat 2

Starts its own servers on 127.0.0.1 (book_pipeline_tests/services.py): PostgreSQL for the
Dagster instance (deploy/dagster.yaml; `--instance sqlite` for a DAGSTER_HOME on disk), Redis
as the Celery broker and result backend, and one Celery worker with `--concurrency` processes
(deploy/celery.yaml). Each job is started as users start it, `dagster job execute`, on the same
synthetic files, with a fresh data folder each (so no embedding is served from the cache), the
local ONNX embedder and the embedded Qdrant store. The worker runs a 2-file warm-up run first,
as a long-lived worker would have imported the project and loaded the model already. With
`--repeat N` the two jobs run N times each, alternately, and the medians are printed.

Printed: the wall time of each command and the run's own duration (RUN_START to RUN_SUCCESS,
from the instance, without the command's start-up), books per second, and the ratio.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the servers' helpers live with the tests

from book_pipeline.defs.resources import folders_run_config  # noqa: E402
from book_pipeline_tests.support.services import (  # noqa: E402
    celery_worker,
    missing_postgres,
    missing_redis,
    postgres_server,
    redis_server,
)
from book_pipeline_tests.support.synthetic_books import write_synthetic_books  # noqa: E402

DAGSTER = Path(sys.executable).parent / "dagster"


def run_config_file(path: Path, books_dir: Path, data_dir: Path) -> Path:
    config = {
        "resources": folders_run_config(books_dir, data_dir),
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run_command(
    arguments: list[str], environment: dict[str, str], log: Path, cwd: Path | None = None
) -> float:
    """A command to the end, its output in `log`; its wall time in seconds."""
    started = time.perf_counter()
    with log.open("w") as output:
        completed = subprocess.run(
            arguments,
            env={**os.environ, **environment},
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(
            f"`{' '.join(arguments)}` failed; its output is in {log}:\n{log.read_text()[-3000:]}"
        )
    return elapsed


def execute(job: str, config: Path, environment: dict[str, str], log: Path) -> float:
    """`dagster job execute` to the end; its wall time in seconds."""
    return run_command(
        [
            str(DAGSTER),
            *("job", "execute", "-m", "book_pipeline.definitions", "-j", job, "-c"),
            str(config),
        ],
        environment,
        log,
    )


def last_run_seconds(instance: dg.DagsterInstance, job: str) -> float:
    [record] = instance.get_run_records(filters=dg.RunsFilter(job_name=job), limit=1)
    if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise SystemExit(f"{job}'s run ended {record.dagster_run.status}")
    assert record.start_time is not None and record.end_time is not None
    return record.end_time - record.start_time


@contextmanager
def instance_environment(kind: str, dagster_home: Path) -> Iterator[dict[str, str]]:
    dagster_home.mkdir(parents=True)
    if kind == "sqlite":
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        yield {"DAGSTER_HOME": str(dagster_home)}
        return
    shutil.copy(ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    with postgres_server() as server:
        yield {"DAGSTER_HOME": str(dagster_home), **server.environment()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--books-per-file", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--instance", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, alternated")
    args = parser.parse_args()
    for missing in (missing_redis(), missing_postgres() if args.instance == "postgres" else None):
        if missing:
            raise SystemExit(missing)

    with (
        tempfile.TemporaryDirectory(prefix="book_pipeline_deploy_bench_") as scratch,
        ExitStack() as stack,
    ):
        root = Path(scratch)
        books_dir, warm_up_books = root / "books", root / "warm_up_books"
        write_synthetic_books(books_dir, args.files, args.books_per_file, seed=1)
        write_synthetic_books(warm_up_books, 2, args.books_per_file, seed=2)
        environment = stack.enter_context(instance_environment(args.instance, root / "home"))
        redis_url = stack.enter_context(redis_server())
        environment |= {
            "BOOK_PIPELINE_CELERY_BROKER": redis_url,
            "BOOK_PIPELINE_CELERY_BACKEND": redis_url,
        }
        os.environ.update(environment)
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(root / "home")))

        def config(name: str, books: Path) -> Path:
            return run_config_file(root / f"{name}.yaml", books, root / f"{name}_data")

        stack.enter_context(
            celery_worker(
                ROOT / "deploy" / "celery.yaml",
                environment,
                root / "worker.log",
                concurrency=args.concurrency,
                cwd=root,
            )
        )
        execute("fetch_data_celery", config("warm_up", warm_up_books), environment, root / "w.log")
        # Alternated, so that a burst of load from elsewhere on the machine hits both alike.
        timings: dict[str, list[tuple[float, float]]] = {"fetch_data": [], "fetch_data_celery": []}
        load_before = os.getloadavg()[0]
        for repeat in range(args.repeat):
            for job, seconds in timings.items():
                name = f"{job}_{repeat}"
                wall = execute(job, config(name, books_dir), environment, root / f"{name}.log")
                seconds.append((wall, last_run_seconds(instance, job)))
        load_after = os.getloadavg()[0]

    books = args.files * args.books_per_file
    print(f"workload            {args.files} files x {args.books_per_file} books = {books} books")
    print(f"instance            {args.instance}; embedder: local ONNX; Qdrant: embedded")
    print(
        f"machine             {os.cpu_count()} cores; 1-min load average "
        f"{load_before:.1f} before, {load_after:.1f} after"
    )
    print(f"median of {args.repeat}         command     run         books/s (run)")
    medians = {}
    for job, label in (("fetch_data", "in-process"), ("fetch_data_celery", "celery")):
        wall = statistics.median(wall for wall, _ in timings[job])
        run = statistics.median(run for _, run in timings[job])
        medians[job] = (wall, run)
        if job == "fetch_data_celery":
            label += f" x{args.concurrency}"
        print(f"{label:<19} {wall:7.1f} s   {run:7.1f} s   {books / run:7.1f}")
        print("  each run         " + ", ".join(f"{run:.1f} s" for _, run in timings[job]))
    (in_wall, in_run), (celery_wall, celery_run) = medians.values()
    print(f"celery / in-process {celery_wall / in_wall:7.2f} x   {celery_run / in_run:7.2f} x")


if __name__ == "__main__":
    main()

"""`book-pipeline search` and `book-pipeline status` as a user waits for them, on the samples.

    python bench/cli_benchmark.py --runs 10 [--baseline-src /path/to/old/checkout] [--json]

The bundled sample books are loaded once with the real pipeline (`fetch_data`, in process) into
a temporary data folder. Then the installed `book-pipeline` command is run `--runs` times per
subcommand, each run a fresh process, and the median wall time is printed. Nothing is kept
between runs but what the pipeline keeps on disk anyway (the Qdrant store, the ledger).

`--breakdown` also times the search command's phases, each in a fresh process as the command
runs them: the interpreter's start, importing the CLI, importing the model's runtime (numpy,
onnxruntime, tokenizers), loading the bundled model (onnxruntime's session, the tokenizer),
opening the Edge store, embedding the query and searching.

`--baseline-src` runs the same commands a second time with another checkout's package first on
PYTHONPATH (e.g. a `git worktree` of main), interleaved run by run with this one (each going
first in every other run), so a busy moment of the machine hits both; the ratio of the medians
is printed too. `search` runs in the default mode (hybrid in this release, dense before).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.definitions import defs
from book_pipeline.defs.resources import folders_run_config

COMMAND = Path(sys.executable).parent / "book-pipeline"
QUERY = "a detective on a train"
COMMANDS = {
    "search": ["search", QUERY],
    "status": ["status"],
}


def load_samples(data_dir: Path) -> None:
    """The samples through fetch_data, as the pipeline loads them."""
    run_config = {
        "resources": folders_run_config(SAMPLE_BOOKS_DIR, data_dir),
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("fetch_data").execute_in_process(
            run_config=run_config, instance=instance
        )
    if not result.success:
        raise SystemExit("fetch_data failed on the sample books")


# The search command's steps, timed one by one (`run_search` does the same, in one go).
PHASES = """
import json, sys, time
started = time.perf_counter()
marks = {}
def mark(name):
    global started
    now = time.perf_counter()
    marks[name] = now - started
    started = now
from book_pipeline.cli import main
from book_pipeline.core.settings import Settings
mark("import the CLI")
import numpy, onnxruntime, tokenizers
mark("import numpy, onnxruntime, tokenizers")
from book_pipeline.core.embedding.choosing import choose_embedder
settings = Settings.from_environment()
embedder = choose_embedder(settings.embedder_choice, for_query=True)
mark("load the model (onnxruntime session, tokenizer)")
from book_pipeline.core.search import search_books
from book_pipeline.core.store.opening import open_configured_store
with open_configured_store(settings) as store:
    mark("open the Edge store")
    hits = search_books(store, embedder, sys.argv[1], 5)
    mark("embed the query and search")
print(json.dumps(marks))
"""


def time_phases(environment: dict[str, str], cwd: Path) -> dict[str, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=environment, cwd=cwd, check=True)
    phases = {"start the interpreter": time.perf_counter() - started}
    completed = subprocess.run(
        [sys.executable, "-c", PHASES, QUERY],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return phases | json.loads(completed.stdout)


def time_command(arguments: list[str], environment: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        [str(COMMAND), *arguments], env=environment, cwd=cwd, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"book-pipeline {' '.join(arguments)} failed: {completed.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command (default: 10)")
    parser.add_argument(
        "--baseline-src", type=Path, help="another checkout to time the same way, interleaved"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the search command's phases"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cli_benchmark_") as scratch:
        root = Path(scratch)
        data_dir = root / "data"
        load_samples(data_dir)
        environment = {
            **{
                name: value
                for name, value in os.environ.items()
                if not name.startswith(("BOOK_PIPELINE_", "QDRANT_", "OPENAI_"))
            },
            "BOOK_PIPELINE_DATA_DIR": str(data_dir),
            "BOOK_PIPELINE_BOOKS_DIR": str(SAMPLE_BOOKS_DIR),
        }
        variants = {"this": environment}
        if args.baseline_src:
            pythonpath = str(args.baseline_src.resolve())
            variants["baseline"] = {**environment, "PYTHONPATH": pythonpath}
        timings: dict[str, dict[str, list[float]]] = {
            variant: {name: [] for name in COMMANDS} for variant in variants
        }
        for run in range(args.runs):
            for name, arguments in COMMANDS.items():
                # Each variant goes first in every other run: no order effect favours one.
                order = list(variants.items())
                for variant, variant_environment in order[run % 2 :] + order[: run % 2]:
                    timings[variant][name].append(
                        time_command(arguments, variant_environment, root)
                    )
        phases: dict[str, list[float]] = {}
        for _ in range(args.runs if args.breakdown else 0):
            for phase, seconds in time_phases(environment, root).items():
                phases.setdefault(phase, []).append(seconds)

    medians = {
        variant: {name: statistics.median(seconds) for name, seconds in by_command.items()}
        for variant, by_command in timings.items()
    }
    phase_medians = {phase: statistics.median(seconds) for phase, seconds in phases.items()}
    report = {
        "runs": args.runs,
        "median_seconds": medians,
        "search_phases_median_seconds": phase_medians,
        "seconds": timings,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name in COMMANDS:
        line = f"book-pipeline {name:<7} median {medians['this'][name]:.3f} s over {args.runs} runs"
        if "baseline" in medians:
            baseline = medians["baseline"][name]
            line += (
                f"; baseline {baseline:.3f} s, {baseline / medians['this'][name]:.1f}x faster now"
            )
        print(line)
    for phase, seconds in phase_medians.items():
        print(f"  search phase: {phase:<56} median {seconds:.3f} s")


if __name__ == "__main__":
    main()

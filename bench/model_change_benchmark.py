"""A change of embedding model on a loaded catalogue: the rebuild's time over several runs, the
searches that ran meanwhile (every 0.2 s, as a customer would) and the slowest, and the tokens
it paid against `book-pipeline estimate`'s figure.

    python bench/model_change_benchmark.py --files 1000 --books-per-file 2 --runs 4 [--json]

Both models are the loopback OpenAI-compatible server (book_pipeline_tests/support), so what is
measured is the pipeline, not a network. Version 1 is loaded with `text-embedding-3-small` by
the load step's own core (`load_books`, the server's vectors computed in process: it is not
what is measured, and a fetch_data run over every file would double the benchmark's time),
then the configuration names `text-embedding-3-large` and `--runs` fetch_data runs (each over
its share of the files, as the sensor's batches) build version 2 beside it; the last one's
model_switch step checks it and switches. The store is the embedded Qdrant Edge store (a search
waits while a run's step holds it).
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import project_root  # noqa: F401  (first: makes book_pipeline_tests importable)

from book_pipeline.cli import main as cli_main
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.ingest.loading import load_books
from book_pipeline.core.settings import LEDGER_FILE_NAME, EmbedderChoice
from book_pipeline.core.store.opening import open_store_versions
from book_pipeline.core.store.versions import EmbedderRecord, VersionRecord
from book_pipeline.defs.sensors import run_config_for
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
    text_vector,
)
from book_pipeline_tests.support.runs import fetch_data_job, openai_run_config
from book_pipeline_tests.support.searching import Searcher
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

OLD_MODEL = "text-embedding-3-small"
NEW_MODEL = "text-embedding-3-large"
DIMENSIONS = 64


def fetch_data(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    base_url: str,
    model: str,
    only_files: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    run_config: dict[str, Any] = openai_run_config(books_dir, data_dir, base_url, model=model)
    run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    if only_files is not None:
        run_config["ops"] = run_config_for(only_files)["ops"]
    result = fetch_data_job().execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )
    if not result.success:
        raise SystemExit(f"fetch_data with {model} failed (run {result.run_id})")
    return result


def load_version_1(books_dir: Path, data_dir: Path, paths: list[Path]) -> None:
    """The old model's version as a fetch_data run leaves it: points, ledger, its record."""
    files = [
        (parsed, np.array([text_vector(b.embedding_text, DIMENSIONS) for b in parsed.books]))
        for parsed in map(parse_book_file, paths)
    ]
    with open_store_versions("books", data_dir / "qdrant-edge") as catalog:
        load_books(catalog.open("books"), LoadLedger(data_dir / LEDGER_FILE_NAME), books_dir,
                   files, OLD_MODEL, remove_books_of_deleted_files=True)  # fmt: skip
        catalog.write_record("books", VersionRecord(EmbedderRecord("openai", OLD_MODEL)))


def estimated_tokens(books_dir: Path, data_dir: Path, base_url: str) -> int:
    """`book-pipeline estimate --json` as a user runs it, configured with the new model."""
    environment = {
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
        "BOOK_PIPELINE_EMBEDDER": "openai",
        "BOOK_PIPELINE_EMBEDDING_MODEL": NEW_MODEL,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "sk-bench",
    }
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            assert cli_main(["estimate", "--json"]) == 0
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return json.loads(output.getvalue())["tokens"]


def run_tokens(result: dg.ExecuteInProcessResult) -> int:
    [event] = result.get_asset_materialization_events()
    return int(event.materialization.metadata["embedding_tokens"].value)


def measure(files: int, books_per_file: int, runs: int, root: Path) -> dict[str, Any]:
    books_dir, data_dir = root / "books", root / "data"
    paths = write_synthetic_books(books_dir, files=files, books_per_file=books_per_file)
    names = [path.name for path in paths]
    state = EmbeddingsServerState(dimensions=DIMENSIONS)
    with embeddings_server(state) as base_url, dg.instance_for_test() as instance:
        started = time.perf_counter()
        load_version_1(books_dir, data_dir, paths)
        first_load_seconds = time.perf_counter() - started
        estimate = estimated_tokens(books_dir, data_dir, base_url)

        def versions() -> Any:
            return open_store_versions("books", data_dir / "qdrant-edge", lock_wait_seconds=600)

        configured = EmbedderChoice(
            "openai", NEW_MODEL, Path("unused"), api_key="sk-bench", base_url=base_url
        )
        searcher = Searcher(versions, configured, NEW_MODEL)
        share = -(-files // runs)
        searcher.start()
        started = time.perf_counter()
        results = [
            fetch_data(instance, books_dir, data_dir, base_url, NEW_MODEL, names[i : i + share])
            for i in range(0, files, share)
        ]
        rebuild_seconds = time.perf_counter() - started
        searcher.stop()
        [switch] = [
            e for e in results[-1].get_asset_check_evaluations() if e.check_name == "model_switch"
        ]
    seconds = [answer.seconds for answer in searcher.answers]
    return {
        "files": files,
        "books": files * books_per_file,
        "runs": len(results),
        "version_1_plain_load_seconds": round(first_load_seconds, 1),
        "rebuild_seconds": round(rebuild_seconds, 1),
        "switched": switch.passed and "switched to" in (switch.description or ""),
        "searches": len(seconds),
        "searches_failed": len(searcher.errors),
        "searches_by_version": {
            name: sum(answer.collection == name for answer in searcher.answers)
            for name in ("books", "books__v2")
        },
        "search_median_seconds": round(statistics.median(seconds), 3) if seconds else None,
        "search_slowest_seconds": round(max(seconds), 3) if seconds else None,
        "tokens_paid": sum(run_tokens(result) for result in results),
        "tokens_estimated": estimate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--books-per-file", type=int, default=2)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="model_change_benchmark-") as scratch:
        figures = measure(args.files, args.books_per_file, args.runs, Path(scratch))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()

"""fetch_data against a plain Python loop doing the same work, in one process, one run.

    python bench/benchmark.py --files 200 --books-per-file 10

Both sides use the same embedder (loaded once, before timing) and a fresh embedded Qdrant store.
fetch_data runs on a persistent (sqlite) Dagster instance with the default fs IO manager, as
`dagster job execute` does with DAGSTER_HOME holding a copy of deploy/local/dagster.yaml.
Timings are printed as ratios because these machines are noisy.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import project_root  # noqa: F401  (first: makes book_pipeline_tests importable)

from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.definitions import defs
from book_pipeline.defs.resources import (
    EmbedderResource,
    QdrantResource,
    embedded_store_paths,
    folders_run_config,
)
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

# The instance configuration docs/operations.md recommends for one machine.
LOCAL_INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "local" / "dagster.yaml"
# Besides a transform and an embed step per file: the listing, the load, the refusal fan-out
# and the check that no file was refused.
STEPS_PER_RUN = 4


def fetch_data_job() -> dg.JobDefinition:
    return defs.resolve_job_def("fetch_data")


def run_fetch_data(books_dir: Path, data_dir: Path, dagster_home: Path) -> float:
    """One fetch_data run on a persistent instance in `dagster_home`; its wall-clock seconds."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(LOCAL_INSTANCE_CONFIG, dagster_home / "dagster.yaml")
    run_config = {
        "resources": folders_run_config(books_dir, data_dir),
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        started = time.perf_counter()
        with dg.execute_job(
            dg.reconstructable(fetch_data_job), instance, run_config=run_config
        ) as result:
            elapsed = time.perf_counter() - started
            if not result.success:
                raise SystemExit("fetch_data failed")
    return elapsed


def run_plain_loop(books_dir: Path, data_dir: Path) -> float:
    """The lesson's original for loop: parse, embed, load, file after file."""
    embedder = EmbedderResource().get_embedder()
    started = time.perf_counter()
    parsed_files = [parse_book_file(path) for path in list_book_files(books_dir)]
    embedded = [
        (parsed, embedder.embed([book.embedding_text for book in parsed.books]))
        for parsed in parsed_files
    ]
    with QdrantResource(**embedded_store_paths(data_dir)).open() as store:
        store.ensure_collection(embedder.dimension, embedder.model_name)
        for parsed, vectors in embedded:
            store.upsert_books(parsed.books, vectors, parsed.sha256)
    return time.perf_counter() - started


def raw_model_seconds(books_dir: Path) -> tuple[int, float]:
    """The model alone on every text at once: the ceiling for embedding throughput."""
    texts = [
        book.embedding_text
        for path in list_book_files(books_dir)
        for book in parse_book_file(path).books
    ]
    embedder = EmbedderResource().get_embedder()
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--books-per-file", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="book_pipeline_bench_") as scratch:
        root = Path(scratch)
        books_dir = root / "books"
        write_synthetic_books(books_dir, args.files, args.books_per_file, seed=1)
        EmbedderResource().get_embedder().embed(["warm up"])

        books, model_seconds = raw_model_seconds(books_dir)
        plain_seconds = run_plain_loop(books_dir, root / "plain_data")
        dagster_seconds = run_fetch_data(books_dir, root / "dagster_data", root / "dagster_home")

    per_step = (dagster_seconds - plain_seconds) / (2 * args.files + STEPS_PER_RUN)
    print(f"workload           {args.files} files x {args.books_per_file} books = {books} books")
    print(f"raw model          {model_seconds:7.2f} s  {books / model_seconds:7.1f} books/s")
    print(f"plain loop         {plain_seconds:7.2f} s  {books / plain_seconds:7.1f} books/s")
    print(f"fetch_data         {dagster_seconds:7.2f} s  {books / dagster_seconds:7.1f} books/s")
    print(f"fetch_data / plain {dagster_seconds / plain_seconds:7.2f} x")
    print(f"Dagster overhead   {1000 * per_step:7.0f} ms per step")


if __name__ == "__main__":
    main()

"""Search latency at 10k loaded books: the query's embedding, the Qdrant query, and both.

    python bench/search_benchmark.py --books 10000 --queries 200

Books are synthetic (`write_synthetic_books`), loaded the plain way (parse, embed with the local
model, `upsert_books`) into a fresh embedded Qdrant store; `--random-vectors` stores random unit
vectors instead, which skips embedding every book (docs/benchmarks.md) and leaves the query
timings comparable
(a brute-force or HNSW search costs the same whatever the vectors mean). Each query is timed
four ways: `search_books` end to end (the default, hybrid mode), the embedding alone, the
store's dense `search` alone with the vector already made, and the store's share of the default
mode (`default_search`: the fused query and the title-and-author one) alone. One query per
kind is run untimed first, so model and caches are warm.
Last, the whole `book-pipeline search` command is timed a few times, as a user waits for it.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import project_root  # noqa: F401  (first: makes book_pipeline_tests importable)

from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.search import book_filter, search_books
from book_pipeline.core.settings import EDGE_FOLDER_NAME
from book_pipeline.core.store.base import BookFilter, BookVectorStore
from book_pipeline.core.store.name_matches import default_search
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

BOOKS_PER_FILE = 100
_SUBJECTS = (
    "a haunted house", "a detective", "a dragon", "a starship crew", "two lovers", "an empire",
    "a lost letter", "a winter journey", "a poisoned king", "an android", "a family secret",
    "a river town", "a prophecy", "a revolution", "a stolen diamond", "a colony on Mars",
)  # fmt: skip
_PLOTS = (
    "who must survive", "hunting for the truth", "torn between duty and love",
    "across a frozen sea", "in a city of whispers", "before the century ends",
    "against a cruel monarch", "after the war", "beneath the old cellar", "among the stars",
)  # fmt: skip


def benchmark_queries(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_PLOTS)}" for _ in range(count)]


def load_books(books_dir: Path, data_dir: Path, random_vectors: bool) -> tuple[int, float]:
    embedder = shared_local_embedder()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    books = 0
    with open_vector_store("books", data_dir / EDGE_FOLDER_NAME) as store:
        store.ensure_collection(embedder.dimension, embedder.model_name)
        for path in list_book_files(books_dir):
            parsed = parse_book_file(path)
            if random_vectors:
                vectors = rng.normal(size=(len(parsed.books), embedder.dimension))
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            else:
                vectors = embedder.embed([book.embedding_text for book in parsed.books])
            books += store.upsert_books(parsed.books, vectors, parsed.sha256)
    return books, time.perf_counter() - started


def milliseconds(
    runners: dict[str, Callable[[str], object]], queries: list[str]
) -> dict[str, list[float]]:
    """Each query through every runner in turn, so a busy moment of the machine hits them all."""
    for run in runners.values():
        run(queries[0])
    timings: dict[str, list[float]] = {label: [] for label in runners}
    for query in queries:
        for label, run in runners.items():
            started = time.perf_counter()
            run(query)
            timings[label].append(1000 * (time.perf_counter() - started))
    return timings


def summary(label: str, timings: list[float]) -> str:
    p95 = statistics.quantiles(timings, n=20, method="inclusive")[-1]
    return f"{label:<34} median {statistics.median(timings):7.2f} ms   p95 {p95:7.2f} ms"


def measure(store: BookVectorStore, queries: list[str], limit: int) -> list[str]:
    embedder = shared_local_embedder()
    vectors = {query: embedder.embed([query])[0].tolist() for query in queries}

    def qdrant_only(query: str, query_filter: BookFilter | None = None) -> object:
        return store.search(vectors[query], limit, query_filter)

    def qdrant_hybrid(query: str) -> object:
        return default_search(store, query, vectors[query], limit)

    author_filter = book_filter("Ada Okafor", None, None)
    year_filter = book_filter(None, 1900, 1950)
    timings = milliseconds(
        {
            "search_books (embed + query)": lambda q: search_books(store, embedder, q, limit),
            "  embedding the query": lambda q: embedder.embed([q]),
            "  Qdrant query": qdrant_only,
            "  Qdrant, default hybrid": qdrant_hybrid,
            "  Qdrant, author filter": lambda q: qdrant_only(q, author_filter),
            "  Qdrant, year range 1900-1950": lambda q: qdrant_only(q, year_filter),
        },
        queries,
    )
    return [summary(label, values) for label, values in timings.items()]


def cli_seconds(data_dir: Path, runs: int) -> list[float]:
    """`book-pipeline search` as a user runs it: a new process loading Python, model and store."""
    command = [str(Path(sys.executable).with_name("book-pipeline")), "search", "a haunted house"]
    environment = {**os.environ, "BOOK_PIPELINE_DATA_DIR": str(data_dir)}
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=environment, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=10_000, help="a multiple of 100")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--random-vectors", action="store_true")
    parser.add_argument("--cli-runs", type=int, default=5)
    args = parser.parse_args()

    queries = benchmark_queries(args.queries)
    with tempfile.TemporaryDirectory(prefix="book_pipeline_search_bench_") as scratch:
        root = Path(scratch)
        write_synthetic_books(root / "books", args.books // BOOKS_PER_FILE, BOOKS_PER_FILE)
        books, load_seconds = load_books(root / "books", root / "data", args.random_vectors)
        started = time.perf_counter()
        with open_vector_store("books", root / "data" / EDGE_FOLDER_NAME) as store:
            open_seconds = time.perf_counter() - started
            lines = measure(store, queries, args.limit)
        cli_timings = cli_seconds(root / "data", args.cli_runs)

    vectors = "random unit vectors" if args.random_vectors else "local model embeddings"
    print(f"collection      {books} synthetic books, {vectors}, embedded Qdrant Edge store")
    print(f"loading         {load_seconds:7.1f} s (parse, embed, upsert)")
    print(f"opening store   {open_seconds:7.2f} s (once per CLI call)")
    print(f"queries         {len(queries)}, limit {args.limit}, one at a time")
    print("\n".join(lines))
    print(
        f"book-pipeline search, whole command: median {statistics.median(cli_timings):.2f} s "
        f"over {len(cli_timings)} runs (process start, imports, model and store loading)"
    )


if __name__ == "__main__":
    main()

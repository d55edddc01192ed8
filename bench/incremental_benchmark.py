"""The cost of new work against the size of what is already loaded.

    python bench/incremental_benchmark.py --loaded-files 1000 [--json]

1. fetch_data with one new file, once on an empty collection and once with `--loaded-files`
   files already loaded: the two should cost about the same.
2. One new_book_files_sensor tick with nothing new, over folders of loaded files (it stats the
   folder, reads the ledger and the collection's stamp).
3. The listing a run starts with (`list_files_to_load`: the store opened, each file's points
   counted by the store, the folder reviewed against both), over folders of loaded files of ten
   books each (random vectors: what they say does not change the count).

The already-loaded state (Qdrant points, ledger, embedding cache) is made by the plain path, as a
fetch_data run would leave it, so that the set-up does not run two Dagster steps for each of
thousands of files (docs/benchmarks.md).
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import project_root  # noqa: F401  (first: makes book_pipeline_tests importable)
from benchmark import run_fetch_data

from book_pipeline.core.books.parsing import ParsedBookFile, parse_book_file
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME
from book_pipeline.core.embedding.cache import embed_with_cache
from book_pipeline.core.ingest.loading import list_files_to_load, load_books
from book_pipeline.definitions import defs
from book_pipeline.defs.resources import (
    BooksFolder,
    EmbedderResource,
    PipelineStateResource,
    QdrantResource,
    embedded_store_paths,
)
from book_pipeline.defs.sensors import new_book_files_sensor
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

BOOKS_PER_FILE = 10
DIMENSION = 384


def load_as_a_run_would(
    books_dir: Path,
    data_dir: Path,
    paths: list[Path],
    vectors_of: Callable[[ParsedBookFile], np.ndarray],
    model_name: str,
) -> tuple[QdrantResource, PipelineStateResource]:
    """The files loaded by the load step's own core (`load_books`): points, sequence, ledger."""
    qdrant = QdrantResource(**embedded_store_paths(data_dir))
    state = PipelineStateResource(data_dir=str(data_dir))
    files = [(parsed, vectors_of(parsed)) for parsed in map(parse_book_file, paths)]
    with qdrant.open() as store:
        load_books(store, state.ledger(), books_dir, files, model_name, True)
    return qdrant, state


def preload(books_dir: Path, data_dir: Path, files: int) -> None:
    """Leave the state a finished fetch_data run over these files would leave."""
    paths = write_synthetic_books(books_dir, files, BOOKS_PER_FILE, seed=3)
    embedder = EmbedderResource().get_embedder()
    with PipelineStateResource(data_dir=str(data_dir)).embedding_cache() as cache:

        def embedded(parsed: ParsedBookFile) -> np.ndarray:
            texts = [book.embedding_text for book in parsed.books]
            return embed_with_cache(embedder, cache, texts).vectors

        load_as_a_run_would(books_dir, data_dir, paths, embedded, embedder.model_name)


def one_new_file_run(root: Path, loaded_files: int) -> float:
    books_dir, data_dir = root / "books", root / "data"
    if loaded_files:
        preload(books_dir, data_dir, loaded_files)
    write_synthetic_books(books_dir, 1, BOOKS_PER_FILE, seed=4, first_file=loaded_files)
    return run_fetch_data(books_dir, data_dir, root / "dagster_home")


def record_loaded_with_random_vectors(
    books_dir: Path, data_dir: Path, files: int, books_per_file: int, seed: int
) -> tuple[QdrantResource, PipelineStateResource]:
    """The store holding the files' books (random 384-d vectors) and the ledger recording it."""
    paths = write_synthetic_books(books_dir, files, books_per_file, seed=seed)
    rng = np.random.default_rng(seed)

    def random_vectors(parsed: ParsedBookFile) -> np.ndarray:
        return rng.normal(size=(len(parsed.books), DIMENSION)).astype(np.float32)

    # Recorded as the configured (bundled) model's: another name would be a model change, whose
    # rebuild makes every file pending again (core/ingest/rebuild.py).
    return load_as_a_run_would(books_dir, data_dir, paths, random_vectors, LOCAL_MODEL_NAME)


def sensor_tick_seconds(root: Path, files: int, repeats: int = 5) -> float:
    books_dir, data_dir = root / "books", root / "data"
    qdrant, state = record_loaded_with_random_vectors(books_dir, data_dir, files, 1, seed=5)
    timings = []
    with dg.instance_for_test() as instance:
        for _ in range(repeats):
            context = dg.build_sensor_context(
                instance=instance,
                resources={
                    "books_folder": BooksFolder(path=str(books_dir)),
                    "pipeline_state": state,
                    "qdrant": qdrant,
                    "embedder": EmbedderResource(),
                },
                definitions=defs,
            )
            started = time.perf_counter()
            result = new_book_files_sensor(context)
            timings.append(time.perf_counter() - started)
            assert not result.run_requests
    return statistics.median(timings)


def listing_seconds(root: Path, files: int, repeats: int = 5) -> float:
    books_dir, data_dir = root / "books", root / "data"
    qdrant, state = record_loaded_with_random_vectors(
        books_dir, data_dir, files, BOOKS_PER_FILE, seed=6
    )
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        with qdrant.open() as store:
            listing = list_files_to_load(store, state.ledger(), books_dir)
        timings.append(time.perf_counter() - started)
        assert (listing.review.up_to_date, listing.review.pending) == (files, [])
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loaded-files", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    EmbedderResource().get_embedder().embed(["warm up"])

    with tempfile.TemporaryDirectory(prefix="book_pipeline_bench_") as scratch:
        empty = one_new_file_run(Path(scratch) / "empty", loaded_files=0)
        full = one_new_file_run(Path(scratch) / "full", loaded_files=args.loaded_files)
    ticks, listings = {}, {}
    for files in (1000, 10_000):
        with tempfile.TemporaryDirectory(prefix="book_pipeline_bench_") as scratch:
            ticks[files] = sensor_tick_seconds(Path(scratch) / "tick", files)
            listings[files] = listing_seconds(Path(scratch) / "listing", files)
    if args.json:
        figures = {
            "loaded_files": args.loaded_files,
            "empty_s": round(empty, 3),
            "loaded_s": round(full, 3),
            "ratio": round(full / empty, 3),
            **{f"sensor_tick_{files}_files_ms": round(1000 * s, 1) for files, s in ticks.items()},
            **{f"listing_{files}_files_ms": round(1000 * s, 1) for files, s in listings.items()},
        }
        print(json.dumps(figures))
        return
    print(f"fetch_data, 1 new file, empty collection        {empty:6.2f} s")
    print(f"fetch_data, 1 new file, {args.loaded_files:>5} files loaded      {full:6.2f} s")
    print(f"ratio                                           {full / empty:6.2f} x")
    for files, seconds in ticks.items():
        print(f"sensor tick, nothing new, {files:>6} files loaded  {1000 * seconds:6.1f} ms")
    for files, seconds in listings.items():
        print(f"listing, nothing new, {files:>6} files loaded      {1000 * seconds:6.1f} ms")


if __name__ == "__main__":
    main()

"""The store on its own, at scale: upsert, HNSW build, reopen, search, delete, memory.

    python bench/store_benchmark.py --points 100000 [--json]

Random unit vectors (384-d, the local model's size) with realistic payloads (titles,
descriptions, 2,000 authors, years 1800-2024, ten books per file), written through the project's
store interface (`open_vector_store`, the embedded Qdrant Edge store unless --url is given), the
way a load writes them: `book_points` makes each book's BM25 keyword vector, as a load does.
Timed in turn:

- upsert: every point, in the pipeline's batches, without building the index: points/s from
  the books and their dense vectors on (`book_points`: ids, payloads, BM25 and trigram
  vectors), as the store layer of a load pays it; write_points_per_s is the engine's write alone;
- index_build: the HNSW build the first close would run (`build_index`);
- open: reopening the store, as each load and each search does;
- search (dense): --queries nearest-10 queries, unfiltered, then half by author, half by a year
  range;
- keyword and hybrid: --queries top-10 queries of two or three title and description words
  (BM25 alone; dense and BM25 fused as `book-pipeline search` does by default);
- delete_file: one file's books removed by the source_file filter, as a reload does.

Query times are the store's only: the query's embedding is not included. rss_mb is the process's
peak resident memory, so it includes the benchmark's own batches. Progress goes to stderr.

--add-after N then writes N more points, as loads do over time, and times the index build that
the closing load pays for them (`add_then_index_s`): what a load pays when it is the one that
pushes the unindexed tail past Edge's indexing threshold.
"""

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from book_pipeline.core.books.parsing import BookRecord
from book_pipeline.core.store.base import UPSERT_BATCH_SIZE, BookFilter, StoredPoint, book_points
from book_pipeline.core.store.keyword_vectors import query_keyword_vector
from book_pipeline.core.store.opening import open_vector_store

DIMENSION = 384
AUTHORS = 2_000
BOOKS_PER_FILE = 10
DELETED_FILES = 20
_WORDS = (
    "storm", "garden", "letter", "empire", "river", "secret", "winter", "machine", "island",
    "crown", "shadow", "voyage", "harvest", "mirror", "silence", "lantern", "orchard", "signal",
)  # fmt: skip


def synthetic_books(start: int, count: int) -> list[BookRecord]:
    books = []
    for number in range(start, start + count):
        words = [_WORDS[(number * 7 + k * 3) % len(_WORDS)] for k in range(30)]
        book = BookRecord(
            index=number % BOOKS_PER_FILE,
            title=f"The {words[0].title()} of {words[1].title()} {number}",
            year=1800 + number % 225,
            author=f"Author {number % AUTHORS}",
            description=" ".join(words),
            source_file=f"file_{number // BOOKS_PER_FILE:07d}.txt",
            line_number=number % BOOKS_PER_FILE + 1,
        )
        books.append(book)
    return books


def random_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic_points(start: int, count: int, rng: np.random.Generator) -> list[StoredPoint]:
    return book_points(synthetic_books(start, count), random_vectors(count, rng), "0" * 64)


def keyword_queries(count: int, rng: np.random.Generator) -> list[str]:
    """Two or three of the books' words, one of them often a title's number (a rare word)."""
    queries = []
    for _ in range(count):
        words = list(rng.choice(_WORDS, size=int(rng.integers(2, 4)), replace=False))
        if rng.random() < 0.5:
            words.append(str(int(rng.integers(0, 1_000_000))))
        queries.append(" ".join(words))
    return queries


def timed(calls: list[Callable[[], object]]) -> list[float]:
    for call in calls[:5]:  # warm caches; not timed
        call()
    seconds = []
    for call in calls:
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def percentile_ms(seconds: list[float], fraction: float) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(
    points: int, queries: int, folder: Path, url: str | None, add_after: int
) -> dict[str, float | int]:
    rng = np.random.default_rng(0)
    build_seconds = upsert_seconds = 0.0
    with open_vector_store("bench_books", folder, url=url) as store:
        store.ensure_collection(DIMENSION, "random-unit-vectors")
        for start in range(0, points, UPSERT_BATCH_SIZE):
            count = min(UPSERT_BATCH_SIZE, points - start)
            books, vectors = synthetic_books(start, count), random_vectors(count, rng)
            started = time.perf_counter()
            batch = book_points(books, vectors, "0" * 64)
            built = time.perf_counter()
            store.upsert_points(batch)
            build_seconds += built - started
            upsert_seconds += time.perf_counter() - built
            if start % 100_000 == 0 and start:
                progress(f"upserted {start:,} points")
        progress(f"upserted {points:,} points; building the index")
        started = time.perf_counter()
        store.build_index()
        index_build_s = time.perf_counter() - started
        progress(f"index built in {index_build_s:.0f} s")

    started = time.perf_counter()
    with open_vector_store("bench_books", folder, url=url) as store:
        open_s = time.perf_counter() - started
        assert store.count() == points, store.count()
        query_vectors = rng.normal(size=(queries, DIMENSION)).astype(np.float32)
        plain = timed([partial(store.search, vector.tolist(), 10) for vector in query_vectors])
        keyword_vectors = [query_keyword_vector(text) for text in keyword_queries(queries, rng)]
        keyword = timed([partial(store.keyword_search, vector, 10) for vector in keyword_vectors])
        hybrid = timed(
            [
                partial(store.hybrid_search, vector.tolist(), keyword_vector, 10)
                for vector, keyword_vector in zip(query_vectors, keyword_vectors, strict=True)
            ]
        )
        filtered = []
        for number, vector in enumerate(query_vectors):
            book_filter = (
                BookFilter(author=f"Author {number * 37 % AUTHORS}")
                if number % 2
                else BookFilter(year_from=1900 + number % 50, year_to=1910 + number % 50)
            )
            started = time.perf_counter()
            hits = store.search(vector.tolist(), 10, book_filter)
            filtered.append(time.perf_counter() - started)
            assert hits, book_filter
        deletes = []
        files = points // BOOKS_PER_FILE
        for number in range(DELETED_FILES):
            source_file = f"file_{(number * 7919) % files:07d}.txt"
            started = time.perf_counter()
            store.remove_books([source_file])
            deletes.append(time.perf_counter() - started)
        later: dict[str, float] = {}
        if add_after:
            for start in range(points, points + add_after, UPSERT_BATCH_SIZE):
                count = min(UPSERT_BATCH_SIZE, points + add_after - start)
                store.upsert_points(synthetic_points(start, count, rng))
            started = time.perf_counter()
            store.build_index()
            later["add_then_index_s"] = round(time.perf_counter() - started, 2)
    return {
        "points": points,
        "upsert_points_per_s": round(points / (build_seconds + upsert_seconds)),
        "write_points_per_s": round(points / upsert_seconds),
        "index_build_s": round(index_build_s, 2),
        "open_s": round(open_s, 3),
        "search_p50_ms": round(percentile_ms(plain, 0.5), 2),
        "search_p95_ms": round(percentile_ms(plain, 0.95), 2),
        "filtered_search_p50_ms": round(percentile_ms(filtered, 0.5), 2),
        "keyword_p50_ms": round(percentile_ms(keyword, 0.5), 2),
        "keyword_p95_ms": round(percentile_ms(keyword, 0.95), 2),
        "hybrid_p50_ms": round(percentile_ms(hybrid, 0.5), 2),
        "hybrid_p95_ms": round(percentile_ms(hybrid, 0.95), 2),
        "delete_file_ms": round(1000 * statistics.median(deletes), 2),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **later,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--url", help="a Qdrant server instead of the embedded Edge store")
    parser.add_argument(
        "--add-after", type=int, default=0, metavar="N", help="then add N points and index them"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.points < BOOKS_PER_FILE * DELETED_FILES:
        parser.error(f"--points must be at least {BOOKS_PER_FILE * DELETED_FILES}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="store_benchmark_") as root:
        figures = run(
            args.points, args.queries, Path(root) / "qdrant-edge", args.url, args.add_after
        )
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:<24} {value}")
    print(f"{'total_s':<24} {time.perf_counter() - started:.0f}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The store on its own, at scale: upsert, HNSW build, reopen, search, delete, memory.

    python bench/store_benchmark.py --points 100000 [--json]

Random unit vectors (384-d, the local model's size) with realistic payloads (titles,
descriptions, 2,000 authors, years 1800-2024, ten books per file), written through the project's
store interface (`open_vector_store`, the embedded Qdrant Edge store unless --url is given), the
way a load writes them. Timed in turn:

- upsert: every point, in the pipeline's batches, without building the index (points/s);
- index_build: the HNSW build the first close would run (`build_index`);
- open: reopening the store, as each load and each search does;
- search: --queries nearest-10 queries, unfiltered, then half by author, half by a year range;
- delete_file: one file's books removed by the source_file filter, as a reload does.

rss_mb is the process's peak resident memory, so it includes the benchmark's own batches.

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
from pathlib import Path

import numpy as np

from book_pipeline.core.parsing import BookRecord
from book_pipeline.core.vector_store import (
    UPSERT_BATCH_SIZE,
    BookFilter,
    StoredPoint,
    book_payload,
    book_point_id,
    open_vector_store,
)

DIMENSION = 384
AUTHORS = 2_000
BOOKS_PER_FILE = 10
DELETED_FILES = 20
_WORDS = (
    "storm", "garden", "letter", "empire", "river", "secret", "winter", "machine", "island",
    "crown", "shadow", "voyage", "harvest", "mirror", "silence", "lantern", "orchard", "signal",
)  # fmt: skip


def synthetic_points(start: int, count: int, rng: np.random.Generator) -> list[StoredPoint]:
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = []
    for offset, vector in enumerate(vectors):
        number = start + offset
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
        points.append(
            StoredPoint(
                book_point_id(book.source_file, book.index),
                book_payload(book, "0" * 64),
                vector.tolist(),
            )
        )
    return points


def percentile_ms(seconds: list[float], fraction: float) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(
    points: int, queries: int, folder: Path, url: str | None, add_after: int
) -> dict[str, float | int]:
    rng = np.random.default_rng(0)
    upsert_seconds = 0.0
    with open_vector_store("bench_books", folder, url=url) as store:
        store.ensure_collection(DIMENSION, "random-unit-vectors")
        for start in range(0, points, UPSERT_BATCH_SIZE):
            batch = synthetic_points(start, min(UPSERT_BATCH_SIZE, points - start), rng)
            started = time.perf_counter()
            store.upsert_points(batch)
            upsert_seconds += time.perf_counter() - started
        started = time.perf_counter()
        store.build_index()
        index_build_s = time.perf_counter() - started

    started = time.perf_counter()
    with open_vector_store("bench_books", folder, url=url) as store:
        open_s = time.perf_counter() - started
        assert store.count() == points, store.count()
        query_vectors = rng.normal(size=(queries, DIMENSION)).astype(np.float32)
        for vector in query_vectors[:5]:  # warm caches; not timed
            store.search(vector.tolist(), 10)
        plain = []
        for vector in query_vectors:
            started = time.perf_counter()
            store.search(vector.tolist(), 10)
            plain.append(time.perf_counter() - started)
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
        "upsert_points_per_s": round(points / upsert_seconds),
        "index_build_s": round(index_build_s, 2),
        "open_s": round(open_s, 3),
        "search_p50_ms": round(percentile_ms(plain, 0.5), 2),
        "search_p95_ms": round(percentile_ms(plain, 0.95), 2),
        "filtered_search_p50_ms": round(percentile_ms(filtered, 0.5), 2),
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

"""A catalogue backfill through a real `dagster-daemon`, against the embedder alone.

    python bench/backfill_benchmark.py --files 200 --books-per-file 100 [--json]

1. Writes the synthetic files into a staging folder, and measures the embedder alone (the
   project's model, loaded and warmed up first) on the same texts, file by file as the embed
   steps call it, in this process.
2. Starts `dagster-daemon run` with the default settings on a fresh instance (`DAGSTER_HOME`
   holding a copy of deploy/local/dagster.yaml, as docs/operations.md sets it up) and a fresh
   data folder, waits for its sensor daemon's heartbeat, then moves every file into the books
   folder at once (a rename: the files keep their mtime).
3. Polls the load ledger (lock-free, as the sensor reads it) until it records every book. When
   it first records any, a real search of the store (opened as `book-pipeline search` opens it)
   must find a book: that is `seconds_to_first`. At the end the store's count is checked.

`ratio` is `books_per_s` over `embedder_books_per_s`, both measured in this one run, because
the machine is noisy. `dagster_home_mb` is the instance folder's size after the backfill (run
storage, event logs, step outputs, ticks).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import project_root  # first: makes book_pipeline_tests importable

from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.search import search_books
from book_pipeline.core.settings import VARIABLES, Settings
from book_pipeline.core.store.opening import open_configured_store, read_collection_stamp
from book_pipeline.defs.resources import EmbedderResource
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

LOCAL_INSTANCE_CONFIG = project_root.ROOT / "deploy" / "local" / "dagster.yaml"
POLL_SECONDS = 0.5
# A backfill that has loaded nothing new for this long has stalled: the benchmark gives up.
STALL_SECONDS = 600


def embedder_seconds(staging: Path) -> tuple[int, float]:
    """The project's model alone on every file's texts, one call per file as the embed step
    makes it: (books, seconds)."""
    texts = [
        [book.embedding_text for book in parse_book_file(path).books]
        for path in list_book_files(staging)
    ]
    embedder = EmbedderResource().get_embedder()
    embedder.embed(["warm up"])
    started = time.perf_counter()
    for file_texts in texts:
        embedder.embed(file_texts)
    return sum(map(len, texts)), time.perf_counter() - started


def daemon_environment(root: Path) -> dict[str, str]:
    """This environment without any of the project's variables (the defaults), but for the
    folders of this benchmark."""
    project_variables = {variable.name for variable in VARIABLES}
    environment = {k: v for k, v in os.environ.items() if k not in project_variables}
    return {
        **environment,
        "DAGSTER_HOME": str(root / "dagster_home"),
        VARIABLES.books_dir.name: str(root / "books"),
        VARIABLES.data_dir.name: str(root / "data"),
    }


def start_daemon(root: Path, environment: dict[str, str]) -> subprocess.Popen:
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(LOCAL_INSTANCE_CONFIG, dagster_home / "dagster.yaml")
    # The instance's SQLite storages made here first: the daemon and this process creating them
    # at once can leave two alembic heads ("has more than one head present").
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            *("run", "-m", "book_pipeline.definitions"),
        ],
        cwd=project_root.ROOT,
        env=environment,
        stdout=(root / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_sensor_daemon(dagster_home: Path, daemon: subprocess.Popen) -> None:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        while "SENSOR" not in instance.get_daemon_heartbeats():
            if daemon.poll() is not None:
                raise SystemExit("dagster-daemon exited: see daemon.log")
            time.sleep(POLL_SECONDS)


def loaded_books(settings: Settings) -> int:
    stamp = read_collection_stamp(settings.collection, settings.edge_path)
    return LoadLedger(settings.ledger_path).loaded_books(stamp) if stamp else 0


def search_finds_a_book(settings: Settings) -> bool:
    embedder = EmbedderResource().get_embedder()
    with open_configured_store(settings) as store:
        return bool(search_books(store, embedder, "a detective on a train", limit=1))


def watch_backfill(settings: Settings, books: int, daemon: subprocess.Popen) -> dict[str, float]:
    """Seconds from the drop to the first book found by a search, and to every book loaded."""
    dropped = time.perf_counter()
    first: float | None = None
    loaded, last_progress = 0, dropped
    while loaded < books:
        if daemon.poll() is not None:
            raise SystemExit("dagster-daemon exited: see daemon.log")
        now_loaded = loaded_books(settings)
        if now_loaded > loaded:
            loaded, last_progress = now_loaded, time.perf_counter()
        if first is None and loaded and search_finds_a_book(settings):
            first = time.perf_counter() - dropped
        if time.perf_counter() - last_progress > STALL_SECONDS:
            raise SystemExit(f"stalled at {loaded} of {books} books: see daemon.log")
        time.sleep(POLL_SECONDS)
    seconds_to_all = time.perf_counter() - dropped
    return {"seconds_to_first": first or seconds_to_all, "seconds_to_all": seconds_to_all}


def folder_mb(folder: Path) -> float:
    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return total / 1_000_000


def stop_daemon(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def run_backfill(root: Path, files: int, books_per_file: int, seed: int) -> dict[str, Any]:
    staging = root / "staging"
    write_synthetic_books(staging, files, books_per_file, seed=seed)
    books, alone_seconds = embedder_seconds(staging)
    environment = daemon_environment(root)
    settings = Settings.from_environment(environment)
    (root / "books").mkdir()
    daemon = start_daemon(root, environment)
    try:
        wait_for_sensor_daemon(root / "dagster_home", daemon)
        for path in sorted(staging.iterdir()):
            path.rename(root / "books" / path.name)
        timings = watch_backfill(settings, books, daemon)
        # The retention sensor's tick after the last run: what the instance keeps.
        time.sleep(2 * settings.sensor_interval_seconds)
    finally:
        stop_daemon(daemon)
    with open_configured_store(settings) as store:
        if store.count() != books:
            raise SystemExit(f"the store holds {store.count()} books, not {books}")
    books_per_s = books / timings["seconds_to_all"]
    embedder_books_per_s = books / alone_seconds
    return {
        "books": books,
        "seconds_to_first": round(timings["seconds_to_first"], 1),
        "seconds_to_all": round(timings["seconds_to_all"], 1),
        "books_per_s": round(books_per_s, 1),
        "embedder_books_per_s": round(embedder_books_per_s, 1),
        "ratio": round(books_per_s / embedder_books_per_s, 3),
        "dagster_home_mb": round(folder_mb(root / "dagster_home"), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--books-per-file", type=int, default=100)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    # A `timeout` or kill -TERM still stops the daemon and removes the scratch folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory(prefix="book_pipeline_backfill_") as scratch:
        result = run_backfill(Path(scratch), args.files, args.books_per_file, args.seed)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:22} {value}")


if __name__ == "__main__":
    main()

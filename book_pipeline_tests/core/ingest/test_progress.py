"""A backfill in progress: what `book-pipeline status` says of it, from the ledger and folder."""

import re
import time
from pathlib import Path

import pytest

from book_pipeline.cli import main
from book_pipeline.core.books.files import FileSnapshot
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_DIMENSION, LOCAL_MODEL_NAME
from book_pipeline.core.ingest.ledger import FileState, LedgerEntry
from book_pipeline.core.ingest.loading import load_books
from book_pipeline.core.ingest.progress import (
    BACKFILL_GAP_SECONDS,
    BackfillProgress,
    backfill_progress,
)
from book_pipeline_tests.support.data_folder import ledger_in, qdrant_in
from book_pipeline_tests.support.embedders import unit_vectors
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

NOW = 1_000_000.0


def loaded(name: str, books: int, at: float, size: int = 1000) -> LedgerEntry:
    return LedgerEntry("gen", name, FileState.LOADED, "sha", size, 0, books, None, None, at, 1)


def pending(count: int, size: int = 1000) -> list[FileSnapshot]:
    return [FileSnapshot(Path("/books"), f"new_{n}.txt", size, 0) for n in range(count)]


def test_files_books_rate_and_time_left() -> None:
    entries = [
        loaded("old.txt", 50, NOW - BACKFILL_GAP_SECONDS - 500),  # an earlier backfill
        loaded("a.txt", 100, NOW - 300),  # the first load: its run's start is not known
        loaded("b.txt", 100, NOW - 300),
        loaded("c.txt", 100, NOW - 200),
        loaded("d.txt", 100, NOW - 100),
    ]

    progress = backfill_progress(entries, pending(6), NOW)

    assert progress == BackfillProgress(
        files_loaded=4, files_pending=6, books_loaded=400, books_pending=600, books_per_second=1.0
    )
    assert progress.seconds_left == 600
    assert progress.describe() == (
        "backfill: 4 of 10 file(s) loaded, 400 of about 1000 book(s), 1.0 books/s, "
        "about 10 min left"
    )


def test_before_the_first_and_second_loads() -> None:
    assert backfill_progress([], pending(3), NOW).describe() == (
        "backfill: 0 of 3 file(s) loaded; the first load has not finished yet"
    )
    one_load = [loaded("a.txt", 100, NOW - 10)]
    assert backfill_progress(one_load, pending(1), NOW).describe() == (
        "backfill: 1 of 2 file(s) loaded, 100 of about 200 book(s); "
        "the rate is known after the next load"
    )


def test_nothing_pending_is_no_backfill() -> None:
    assert backfill_progress([loaded("a.txt", 100, NOW - 10)], [], NOW) is None


def load_into_store(books_dir: Path, data_dir: Path, paths: list[Path]) -> None:
    """What a run's load does with these files: points in the store, then the record."""
    parsed = [parse_book_file(path) for path in paths]
    with qdrant_in(data_dir).open() as store:
        load_books(
            store,
            ledger_in(data_dir),
            books_dir,
            [(file, unit_vectors(len(file.books), LOCAL_MODEL_DIMENSION)) for file in parsed],
            LOCAL_MODEL_NAME,
            remove_books_of_deleted_files=True,
        )


def test_status_shows_the_backfill_in_progress(
    books_dir: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(books_dir))
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    files = write_synthetic_books(books_dir, files=5, books_per_file=10)
    load_into_store(books_dir, data_dir, files[:1])
    time.sleep(0.2)
    load_into_store(books_dir, data_dir, files[1:3])

    assert main(["status"]) == 0

    out = capsys.readouterr().out
    assert "2 pending" in out
    line = re.search(r"backfill: 3 of 5 file\(s\) loaded, 30 of about (\d+) book\(s\), .*", out)
    assert line is not None, out
    assert 45 <= int(line.group(1)) <= 55
    assert re.search(r"[\d.]+ books/s, about .+ left$", line.group(0))

"""The bundled sample folder: the default books folder must load cleanly into one collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import BookRecord, parse_book_file


@pytest.fixture(scope="module")
def sample_books() -> list[BookRecord]:
    return [
        book for path in list_book_files(SAMPLE_BOOKS_DIR) for book in parse_book_file(path).books
    ]


def test_there_are_enough_sample_files_and_books(sample_books: list[BookRecord]) -> None:
    assert len(list_book_files(SAMPLE_BOOKS_DIR)) >= 5
    assert len(sample_books) >= 30


@pytest.mark.parametrize("path", list_book_files(SAMPLE_BOOKS_DIR), ids=lambda path: path.name)
def test_every_sample_file_parses(path: Path) -> None:
    assert parse_book_file(path).books


def test_indexes_are_unique_across_the_folder(sample_books: list[BookRecord]) -> None:
    """Points are keyed by file and index, but results show `book_index` alone: keep it unique."""
    repeated = [
        index for index, count in Counter(b.index for b in sample_books).items() if count > 1
    ]
    assert repeated == []


def test_titles_are_unique(sample_books: list[BookRecord]) -> None:
    repeated = [
        title for title, count in Counter(b.title for b in sample_books).items() if count > 1
    ]
    assert repeated == []

"""The load ledger: what has actually been loaded (or has failed), file by file.

Whether a file still needs work is decided from here, not from a sensor's cursor, so a reset
cursor, a restarted daemon or a manual run never loads a file twice nor forgets one. It is a
small sqlite database beside the Qdrant store; sqlite makes it safe to read from the sensor
while a run writes it.
"""

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from book_pipeline.core.book_files import FileSnapshot, file_sha256, snapshot_book_files
from book_pipeline.core.parsing import ParsedBookFile


class FileState(StrEnum):
    LOADED = "loaded"
    FAILED = "failed"
    REMOVED = "removed"


@dataclass(frozen=True)
class LedgerEntry:
    file_name: str
    state: FileState
    sha256: str
    size: int
    mtime_ns: int
    books: int
    error: str | None
    error_line: int | None
    updated_at: float


@dataclass(frozen=True)
class FolderReview:
    """The folder against the ledger: what a run has to do, and what it leaves alone."""

    pending: list[FileSnapshot]
    failed_unchanged: list[LedgerEntry]
    removed: list[LedgerEntry]
    up_to_date: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS book_files (
    file_name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    books INTEGER NOT NULL,
    error TEXT,
    error_line INTEGER,
    updated_at REAL NOT NULL
)
"""


class LoadLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._schema_ready = False

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            # No fsync per write: a record lost to a power cut only means a file is loaded again
            # (idempotent, and its embeddings are cached).
            connection.execute("PRAGMA synchronous=NORMAL")
            if not self._schema_ready:
                # WAL lets the sensor read while a run writes; the mode persists in the file.
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
                self._schema_ready = True
            with connection:
                yield connection

    def entries(self) -> dict[str, LedgerEntry]:
        if not self.path.exists():
            return {}
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT file_name, state, sha256, size, mtime_ns, books, error, error_line, "
                "updated_at FROM book_files"
            ).fetchall()
        return {row[0]: LedgerEntry(row[0], FileState(row[1]), *row[2:]) for row in rows}

    def record_loaded(self, files: Iterable[ParsedBookFile]) -> None:
        """One transaction for the whole load: one fsync-free commit, not one per file."""
        self._write_many(
            (file.file_name, FileState.LOADED, file.sha256, file.snapshot.size,
             file.snapshot.mtime_ns, len(file.books), None, None)
            for file in files
        )  # fmt: skip

    def record_failed(
        self, snapshot: FileSnapshot, sha256: str, error: str, error_line: int | None
    ) -> None:
        self._write(
            snapshot.name,
            FileState.FAILED,
            sha256,
            snapshot.size,
            snapshot.mtime_ns,
            0,
            error,
            error_line,
        )

    def record_removed(self, entry: LedgerEntry, books_kept: bool) -> None:
        """The file left the folder; `books` counts what stayed searchable (kept, or none)."""
        self._write(
            entry.file_name,
            FileState.REMOVED,
            entry.sha256,
            entry.size,
            entry.mtime_ns,
            entry.books if books_kept else 0,
        )

    def _write(
        self,
        file_name: str,
        state: FileState,
        sha256: str,
        size: int,
        mtime_ns: int,
        books: int,
        error: str | None = None,
        error_line: int | None = None,
    ) -> None:
        self._write_many([(file_name, state, sha256, size, mtime_ns, books, error, error_line)])

    def _write_many(self, rows: Iterable[tuple]) -> None:
        now = time.time()
        with self._connection() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO book_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((*row, now) for row in rows),
            )


def review_folder(
    snapshots: Iterable[FileSnapshot],
    entries: dict[str, LedgerEntry],
    sha256_of: Callable[[FileSnapshot], str],
) -> FolderReview:
    """Sort the folder's files into pending, failed-and-unchanged and up to date.

    A file whose size and mtime match its ledger entry is taken as unchanged without reading
    it; otherwise its content hash decides, so touching a file costs a read, not a re-embed.
    """
    pending: list[FileSnapshot] = []
    failed_unchanged: list[LedgerEntry] = []
    up_to_date = 0
    present: set[str] = set()
    for snapshot in snapshots:
        present.add(snapshot.name)
        entry = entries.get(snapshot.name)
        if (
            entry is None
            or entry.state is FileState.REMOVED
            or not _same_content(snapshot, entry, sha256_of)
        ):
            pending.append(snapshot)
        elif entry.state is FileState.FAILED:
            failed_unchanged.append(entry)
        else:
            up_to_date += 1
    removed = sorted(
        (
            entry
            for name, entry in entries.items()
            if name not in present and entry.state is not FileState.REMOVED
        ),
        key=lambda entry: entry.file_name,
    )
    return FolderReview(pending, failed_unchanged, removed, up_to_date)


def review_books_folder(folder: Path, ledger: LoadLedger) -> FolderReview:
    """The books folder as it is now, against what the ledger says was loaded."""
    return review_folder(
        snapshot_book_files(folder),
        ledger.entries(),
        lambda snapshot: file_sha256(snapshot.path, books_folder=folder),
    )


def _same_content(
    snapshot: FileSnapshot, entry: LedgerEntry, sha256_of: Callable[[FileSnapshot], str]
) -> bool:
    if (snapshot.size, snapshot.mtime_ns) == (entry.size, entry.mtime_ns):
        return True
    return snapshot.size == entry.size and sha256_of(snapshot) == entry.sha256

"""The load ledger: what has been loaded into which collection (or has failed), file by file.

Whether a file still needs work is decided from here, not from a sensor's cursor, so a reset
cursor, a restarted daemon or a manual run never loads a file twice nor forgets one. It is a
small sqlite database in the data folder; sqlite makes it safe to read from the sensor while a
run writes it.

A load is recorded under the collection's generation (`CollectionStamp`) and the load's
sequence number, so the record only counts for the collection it describes: a collection that
was deleted, moved, emptied or replaced has another generation (or none), and one restored from
an older backup has a smaller sequence than the loads made after the backup. Their files are
pending again. Refusals are about a file's content, whatever the collection, so they are kept
under no collection (`ANY_COLLECTION`) and survive a switch of collection.
"""

import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from book_pipeline.core.books.files import FileSnapshot
from book_pipeline.core.books.parsing import ParsedBookFile
from book_pipeline.core.runtime.disk_space import naming_full_disk
from book_pipeline.core.store.base import CollectionStamp

# Refusals: recorded for the file's content, whatever the collection.
ANY_COLLECTION = ""
# Loads recorded before records were tied to a collection: they describe the collection that
# was made before generations, which adopts them at its next load (`adopt_previous_release`).
PREVIOUS_RELEASE = "previous-release"
SCHEMA_VERSION = 3


class FileState(StrEnum):
    LOADED = "loaded"
    FAILED = "failed"
    REMOVED = "removed"


_STATES = {state.value: state for state in FileState}


class LedgerEntry(NamedTuple):
    """One file's record; a tuple, because a sensor tick builds one per file (10,000 of them)."""

    collection: str
    file_name: str
    state: FileState
    sha256: str
    size: int
    mtime_ns: int
    books: int
    error: str | None
    error_line: int | None
    updated_at: float
    load_sequence: int
    # The embedding tokens the endpoint billed for the file at this load (0: all from the
    # cache); None for a local model, refusals, removals and loads recorded before version 3.
    tokens: int | None = None


@dataclass(frozen=True)
class Drift:
    """A file recorded as loaded whose books the store does not hold as recorded."""

    file_name: str
    recorded: int
    # None: the store's counts were not read (the sensor reads only the stamp).
    stored: int | None
    # Where the record's load went, when it was not this collection as it is now.
    elsewhere: str | None = None

    def describe(self) -> str:
        held = "" if self.stored is None else f", the store holds {self.stored}"
        where = f" {self.elsewhere}" if self.elsewhere else ""
        return f"recorded as {self.recorded} book(s) loaded{where}{held}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS book_files (
    collection TEXT NOT NULL,
    file_name TEXT NOT NULL,
    state TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    books INTEGER NOT NULL,
    error TEXT,
    error_line INTEGER,
    updated_at REAL NOT NULL,
    load_sequence INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER,
    PRIMARY KEY (collection, file_name)
)
"""
# The previous release's table had one row per file: its refusals apply to any collection, its
# loads to the collection it loaded into, which has no generation yet.
_UPGRADE_FROM_VERSION_1 = f"""
ALTER TABLE book_files RENAME TO book_files_version_1;
{_SCHEMA};
INSERT INTO book_files
SELECT CASE state WHEN '{FileState.FAILED.value}' THEN '{ANY_COLLECTION}'
                  ELSE '{PREVIOUS_RELEASE}' END,
       file_name, state, sha256, size, mtime_ns, books, error, error_line, updated_at, 0, NULL
FROM book_files_version_1;
DROP TABLE book_files_version_1;
"""
# Version 3 records each loaded file's embedding tokens; older loads' are unknown.
_UPGRADE_FROM_VERSION_2 = "ALTER TABLE book_files ADD COLUMN tokens INTEGER"
_COLUMNS = (
    "collection, file_name, state, sha256, size, mtime_ns, books, error, error_line, "
    "updated_at, load_sequence, tokens"
)


def ledger_key(stamp: CollectionStamp) -> str:
    return stamp.generation or PREVIOUS_RELEASE


class LoadLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._schema_ready = False

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with (
            naming_full_disk(self.path),
            closing(self._connect()) as connection,
        ):
            # No fsync per write: a record lost to a power cut only means a file is loaded again
            # (idempotent, and its embeddings are cached).
            connection.execute("PRAGMA synchronous=NORMAL")
            if not self._schema_ready:
                _prepare_schema(connection)
                self._schema_ready = True
            with connection:
                yield connection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, timeout=30)

    def entries(self, stamp: CollectionStamp | None) -> dict[str, LedgerEntry]:
        """What the record says of each file for this collection (None: there is none).

        A load recorded with a higher sequence than the collection's is not in it (an older
        copy was restored): such a file is left out, so it is pending, and such a removal is
        given as still loaded, so it is done again. A refusal newer than the file's load wins:
        the file has changed since it was loaded.
        """
        if not self.path.exists():
            return {}
        keys = [ANY_COLLECTION] if stamp is None else [ANY_COLLECTION, ledger_key(stamp)]
        with self._connection() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM book_files WHERE collection IN "
                f"({', '.join('?' * len(keys))}) ORDER BY updated_at",
                keys,
            ).fetchall()
        entries: dict[str, LedgerEntry] = {}
        for row in rows:
            entry = LedgerEntry(row[0], row[1], _STATES[row[2]], *row[3:])
            if stamp is not None and entry.load_sequence > stamp.load_sequence:
                if entry.state is FileState.LOADED:
                    continue
                if entry.state is FileState.REMOVED:
                    entry = entry._replace(state=FileState.LOADED)
            entries[entry.file_name] = entry
        return entries

    def unconfirmed_loads(
        self, stamp: CollectionStamp | None, other_versions: Collection[str] = ()
    ) -> dict[str, Drift]:
        """Files whose latest recorded load went elsewhere: into another collection (deleted,
        moved or replaced since, or another name or model) or into a later state of this one
        than the store holds (an older copy restored). Loads into `other_versions` (keys of
        the collection's other versions, core/ingest/rebuild.py) are where they belong."""
        if not self.path.exists():
            return {}
        key = None if stamp is None else ledger_key(stamp)
        sequence = 0 if stamp is None else stamp.load_sequence
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT file_name, books, collection, load_sequence FROM book_files "
                "WHERE state = ? AND collection != ? "
                "AND (collection IS NOT ? OR load_sequence > ?) "
                "ORDER BY updated_at",
                (FileState.LOADED.value, ANY_COLLECTION, key, sequence),
            ).fetchall()
        return {
            name: Drift(
                name,
                books,
                None,
                f"by load {load_sequence}, after the store's last load ({sequence})"
                if collection == key
                else "into another collection (or one since deleted, moved or replaced)",
            )
            for name, books, collection, load_sequence in rows
            if collection not in other_versions
        }

    def loaded_books(self, stamp: CollectionStamp | None) -> int:
        """The books the record says this collection holds."""
        return sum(
            entry.books for entry in self.entries(stamp).values() if entry.state is FileState.LOADED
        )

    def record_loaded(
        self,
        files: Iterable[ParsedBookFile],
        collection: str,
        load_sequence: int,
        tokens: Mapping[str, int] | None = None,
    ) -> None:
        """One transaction for the whole load: one fsync-free commit, not one per file.
        `tokens`: what embedding each file cost, by file name (None: not billed by the token)."""
        files = list(files)
        tokens = tokens or {}
        self._write_many(
            [(collection, file.file_name, FileState.LOADED, file.sha256, file.snapshot.size,
              file.snapshot.mtime_ns, len(file.books), None, None, load_sequence,
              tokens.get(file.file_name))
             for file in files],
            resolved=[file.file_name for file in files],
        )  # fmt: skip

    def record_failed(
        self, snapshot: FileSnapshot, sha256: str, error: str, error_line: int | None
    ) -> None:
        self._write_many(
            [(ANY_COLLECTION, snapshot.name, FileState.FAILED, sha256, snapshot.size,
              snapshot.mtime_ns, 0, error, error_line, 0, None)]
        )  # fmt: skip

    def record_removed(
        self, entries: Iterable[LedgerEntry], collection: str, load_sequence: int, books_kept: bool
    ) -> None:
        """The files left the folder; `books` counts what stayed searchable (kept, or none)."""
        entries = list(entries)
        self._write_many(
            [(collection, entry.file_name, FileState.REMOVED, entry.sha256, entry.size,
              entry.mtime_ns, entry.books if books_kept else 0, None, None, load_sequence, None)
             for entry in entries],
            resolved=[entry.file_name for entry in entries],
        )  # fmt: skip

    def adopt_previous_release(self, generation: str) -> None:
        """The previous release's loads describe this collection, which has just been given its
        generation; its books were counted against them before (the listing's check)."""
        with self._connection() as connection:
            connection.execute(
                "UPDATE OR REPLACE book_files SET collection = ? WHERE collection = ?",
                (generation, PREVIOUS_RELEASE),
            )

    def _write_many(self, rows: list[tuple], resolved: Iterable[str] = ()) -> None:
        """Write rows; the refusals of `resolved` files are over (loaded, or gone)."""
        now = time.time()
        with self._connection() as connection:
            connection.executemany(
                "DELETE FROM book_files WHERE collection = ? AND file_name = ?",
                ((ANY_COLLECTION, name) for name in resolved),
            )
            connection.executemany(
                f"INSERT OR REPLACE INTO book_files ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((*row[:9], now, *row[9:]) for row in rows),
            )


def _prepare_schema(connection: sqlite3.Connection) -> None:
    """Create the table, or upgrade the previous release's in place, once per database."""
    # WAL lets the sensor read while a run writes; the mode persists in the file.
    connection.execute("PRAGMA journal_mode=WAL")
    if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Checked again under the write lock: another process may have upgraded it meanwhile.
        if connection.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            columns = [row[1] for row in connection.execute("PRAGMA table_info(book_files)")]
            if columns and "collection" not in columns:
                for statement in _UPGRADE_FROM_VERSION_1.split(";"):
                    if statement.strip():
                        connection.execute(statement)
            elif columns and "tokens" not in columns:
                connection.execute(_UPGRADE_FROM_VERSION_2)
            else:
                connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise

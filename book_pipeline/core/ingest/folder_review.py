"""The books folder against the load ledger: which files are pending, failed and unchanged, up to
date, removed, drifted (recorded as loaded, not held by the store as recorded), or orphans.

A file whose size and mtime match its ledger entry is taken as unchanged without reading it;
otherwise its content hash decides, so touching a file costs a read, not a re-embed.
"""

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from book_pipeline.core.books.files import FileSnapshot, file_sha256, snapshot_book_files
from book_pipeline.core.ingest.ledger import Drift, FileState, LedgerEntry, LoadLedger
from book_pipeline.core.store.base import CollectionStamp


@dataclass(frozen=True)
class FolderReview:
    """The folder against the ledger: what a run has to do, and what it leaves alone.

    `drifted` and `orphans` are found only when the store's counts were given: drifted files
    are pending again, orphans are source files the store holds that neither the folder nor
    the record knows (their books are removed like a deleted file's).
    """

    pending: list[FileSnapshot]
    failed_unchanged: list[LedgerEntry]
    removed: list[LedgerEntry]
    up_to_date: int
    drifted: list[Drift] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def review_folder(
    snapshots: Iterable[FileSnapshot],
    entries: dict[str, LedgerEntry],
    sha256_of: Callable[[FileSnapshot], str],
    stored_counts: dict[str, int] | None = None,
    unconfirmed: dict[str, Drift] | None = None,
) -> FolderReview:
    """Sort the folder's files into pending, failed-and-unchanged and up to date.

    A file whose size and mtime match its ledger entry is taken as unchanged without reading
    it; otherwise its content hash decides, so touching a file costs a read, not a re-embed.
    With the store's per-file counts, a file is up to date only if the store holds exactly the
    books recorded: otherwise it has drifted and is pending again. A pending file whose load
    is recorded elsewhere (`unconfirmed`) is named as drifted too.
    """
    pending: list[FileSnapshot] = []
    failed_unchanged: list[LedgerEntry] = []
    drifted: list[Drift] = []
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
            if entry is None and unconfirmed and snapshot.name in unconfirmed:
                drift = unconfirmed[snapshot.name]
                stored = None if stored_counts is None else stored_counts.get(snapshot.name, 0)
                drifted.append(replace(drift, stored=stored))
        elif entry.state is FileState.FAILED:
            failed_unchanged.append(entry)
        elif (
            stored_counts is not None
            and (stored := stored_counts.get(entry.file_name, 0)) != entry.books
        ):
            drifted.append(Drift(entry.file_name, entry.books, stored))
            pending.append(snapshot)
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
    orphans = sorted(
        name
        for name in (stored_counts or {})
        if name not in present and _holds_no_books(entries.get(name))
    )
    return FolderReview(pending, failed_unchanged, removed, up_to_date, drifted, orphans)


def review_books_folder(
    folder: Path,
    ledger: LoadLedger,
    stamp: CollectionStamp | None,
    stored_counts: dict[str, int] | None = None,
    other_versions: Collection[str] = (),
) -> FolderReview:
    """The books folder as it is now, against what the ledger says this collection holds (and,
    given its counts, what it does hold, naming the drift: without them, a sensor tick, only
    what is pending matters)."""
    return review_folder(
        snapshot_book_files(folder),
        ledger.entries(stamp),
        lambda snapshot: file_sha256(snapshot.path, books_folder=folder),
        stored_counts,
        None if stored_counts is None else ledger.unconfirmed_loads(stamp, other_versions),
    )


def _holds_no_books(entry: LedgerEntry | None) -> bool:
    """Whether the record says the store holds none of this (absent) file's books: never
    loaded, or removed without keeping them."""
    return entry is None or (entry.state is FileState.REMOVED and entry.books == 0)


def _same_content(
    snapshot: FileSnapshot, entry: LedgerEntry, sha256_of: Callable[[FileSnapshot], str]
) -> bool:
    if (snapshot.size, snapshot.mtime_ns) == (entry.size, entry.mtime_ns):
        return True
    return snapshot.size == entry.size and sha256_of(snapshot) == entry.sha256

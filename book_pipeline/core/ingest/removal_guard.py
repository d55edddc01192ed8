"""The removal guard: a run removes the books of files that left the books folder only when few
enough left, and never because the folder came up empty; `book-pipeline forget` removes named
files' books on purpose.

A folder that was moved, or a network share that did not mount, looks exactly like a folder
whose files were all deleted. Past the limit the run removes nothing (it still loads what is
new), and says which files would go and how to confirm; the books stay searchable meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.core.books.files import snapshot_book_files
from book_pipeline.core.ingest.folder_review import FolderReview
from book_pipeline.core.ingest.ledger import FileState, LedgerEntry, LoadLedger
from book_pipeline.core.ingest.ownership import claim_recorded_books, holdings, pipeline_id
from book_pipeline.core.store.base import BookVectorStore

# Whatever the collection's size, this many files may always go in one run.
MIN_REMOVAL_LIMIT = 5
# Otherwise a tenth of the files loaded.
REMOVAL_LIMIT_SHARE = 10
FORGET_COMMAND = "book-pipeline forget"
LIMIT_VARIABLE = "BOOK_PIPELINE_MAX_REMOVED_FILES_PER_RUN"
# The state `book-pipeline status` gives a file whose removal the guard holds.
HELD_STATE = "held: removal not confirmed"
_NAMED_FILES_LIMIT = 20


class ForgetRefusedError(ValueError):
    """`forget` was asked for a file it must not or cannot forget; nothing was removed."""


@dataclass(frozen=True)
class HeldRemoval:
    """Files whose books a run would remove but did not: too many, or the folder was empty."""

    files: list[str]
    folder: Path
    limit: int
    loaded_files: int
    folder_empty: bool

    def describe(self) -> str:
        named = ", ".join(self.files[:_NAMED_FILES_LIMIT])
        if len(self.files) > _NAMED_FILES_LIMIT:
            named += f" and {len(self.files) - _NAMED_FILES_LIMIT} more"
        if self.folder_empty:
            why = (
                f"the books folder {self.folder} is empty (a network share that did not mount, "
                "or a folder that was moved?), so no book is removed for it"
            )
            confirm = f"To remove them on purpose: {FORGET_COMMAND} FILE..."
        else:
            why = (
                f"{len(self.files)} file(s) left the books folder {self.folder}, more than this "
                f"run may remove ({self.limit} of the {self.loaded_files} file(s) loaded; "
                f"{LIMIT_VARIABLE}), so no book is removed"
            )
            confirm = (
                f"To confirm: run again with {LIMIT_VARIABLE}={len(self.files)} (or the run config "
                "resources.pipeline_state.config.max_removed_files_per_run), or remove them on "
                f"purpose: {FORGET_COMMAND} FILE..."
            )
        return (
            f"{why}: the books of {len(self.files)} file(s) would go: {named}. They stay "
            f"searchable meanwhile. If the folder is not where it should be, put it back. "
            f"{confirm}"
        )


def removal_limit(loaded_files: int, configured: int | None) -> int:
    if configured is not None:
        return configured
    return max(MIN_REMOVAL_LIMIT, loaded_files // REMOVAL_LIMIT_SHARE)


def loaded_file_count(entries: dict[str, LedgerEntry]) -> int:
    """The files the record says the collection holds: what the limit is a tenth of."""
    return sum(entry.state is FileState.LOADED for entry in entries.values())


def hold_removals(
    review: FolderReview, folder: Path, loaded_files: int, configured_limit: int | None
) -> HeldRemoval | None:
    """The removals a run must hold back (None: it may make them all).

    `review.removed` are files the record says were loaded and that left the folder,
    `review.orphans` files whose books the store holds and no record does.
    """
    files = sorted({entry.file_name for entry in review.removed} | set(review.orphans))
    if not files:
        return None
    present = len(review.pending) + len(review.failed_unchanged) + review.up_to_date
    limit = removal_limit(loaded_files, configured_limit)
    if present and len(files) <= limit:
        return None
    return HeldRemoval(files, folder, limit, loaded_files, folder_empty=not present)


def forget_files(
    store: BookVectorStore, ledger: LoadLedger, books_folder: Path, names: Sequence[str]
) -> list[str]:
    """Remove the books of files that left the folder, on purpose, and record it; returns the
    files whose books were removed. Refused, with nothing removed, for a file still in the
    folder (the next run would load it again) or one whose books the collection does not hold.
    """
    stamp = store.stamp()
    if stamp is None:
        raise ForgetRefusedError(
            f"the Qdrant collection {store.collection!r} does not exist at {store.location}"
        )
    present = {snapshot.name for snapshot in snapshot_book_files(books_folder)}
    still_there = sorted(set(names) & present)
    if still_there:
        raise ForgetRefusedError(
            f"{', '.join(still_there)} still in the books folder {books_folder}: the next run "
            "would load it again. Move it out of the folder first"
        )
    owner = pipeline_id(ledger)
    entries = ledger.entries(stamp)
    # Only this pipeline's books: those of another pipeline sharing the collection are refused.
    stored = holdings(store, owner, entries).mine
    held = {
        name: entries.get(name) for name in names if name in stored or _loaded(entries.get(name))
    }
    unknown = sorted(set(names) - set(held))
    if unknown:
        raise ForgetRefusedError(
            f"the Qdrant collection {store.collection!r} at {store.location} holds no book of "
            f"{', '.join(unknown)} that this pipeline loaded (book-pipeline status lists them)"
        )
    claim_recorded_books(store, owner, entries)
    store.remove_books(sorted(held), owner=owner)
    load_sequence = stamp.load_sequence + 1
    generation = store.record_load(load_sequence)
    if stamp.generation is None:
        ledger.adopt_previous_release(generation)
    recorded = [entry for entry in held.values() if entry is not None]
    ledger.record_removed(recorded, generation, load_sequence, books_kept=False)
    return sorted(held)


def _loaded(entry: LedgerEntry | None) -> bool:
    return entry is not None and entry.state is FileState.LOADED

"""Listing what a run must load, and loading it: the store made to match the folder, and the
ledger made to record what the store then holds.

The listing asks the store what it holds (its stamp and an exact count of each file's points),
so a record that drifted from the store (a store deleted, moved, emptied, replaced or restored
from an older backup; a crash between writing points and recording them) makes its files
pending again instead of passing for loaded.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from book_pipeline.core.books.folders import require_books_folder
from book_pipeline.core.books.parsing import ParsedBookFile
from book_pipeline.core.embedding.costs import EmbeddingBill
from book_pipeline.core.ingest.folder_review import FolderReview, review_books_folder
from book_pipeline.core.ingest.ledger import ANY_COLLECTION, FileState, LoadLedger
from book_pipeline.core.ingest.ownership import (
    Holdings,
    claim_recorded_books,
    holdings,
    pipeline_id,
    read_pipeline_id,
    refuse_other_pipelines_files,
)
from book_pipeline.core.ingest.removal_guard import HeldRemoval, hold_removals, loaded_file_count
from book_pipeline.core.runtime.fail_points import (
    AFTER_FIRST_BATCH,
    BEFORE_RECORDING_THE_LOAD,
    fail_point,
)
from book_pipeline.core.store.base import BookVectorStore, CollectionStamp, book_point_id

if TYPE_CHECKING:
    # Only its fields are read: the listing (`status`, the sensor) does not pay for the cache.
    from book_pipeline.core.embedding.book_file import EmbeddedBookFile


@dataclass(frozen=True)
class Listing:
    review: FolderReview
    # None: the collection does not exist, so nothing is loaded in it whatever was recorded.
    stamp: CollectionStamp | None
    # Each source file's points of this pipeline, as the store counted them (`ownership`).
    stored_counts: dict[str, int]
    # The points of other pipelines (or of none this one recorded), by file: left alone.
    others: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadOutcome:
    books_loaded: int
    # The folder as the load found it after writing: its removed files and orphans are gone
    # from the store (when removal is on), its refused files were left alone.
    review: FolderReview
    collection_size: int
    load_sequence: int
    # The removals the guard held back (none of them made), or None.
    held_removal: HeldRemoval | None = None


@dataclass(frozen=True)
class LoadSummary:
    """What a load did, as the asset reports it: `counts` is its output and metadata."""

    counts: dict[str, Any]
    # The files loaded and the failed files skipped (name: error), sorted by name.
    loaded_files: list[str]
    failed_files: dict[str, str]
    bill: EmbeddingBill
    held_removal: HeldRemoval | None = None

    def messages(self, collection: str, location: str) -> list[str]:
        counts = self.counts
        return [
            f"loaded {counts['books_loaded']} book(s) from {counts['files_processed']} file(s) "
            f"into the Qdrant collection {collection!r} at {location} "
            f"({counts['collection_size']} in all), removed the books of "
            f"{counts['files_removed']} deleted file(s)"
            + (
                f"; the books of {counts['removals_held']} file(s) that left the folder are "
                "kept: their removal is not confirmed"
                if self.held_removal
                else ""
            ),
            self.bill.describe(),
        ]


def list_files_to_load(
    store: BookVectorStore,
    ledger: LoadLedger,
    books_folder: Path,
    other_versions: Collection[str] = (),
) -> Listing:
    """The folder against what the store holds and the ledger records for it; refused
    (`BooksFolderMissingError`) when the samples stand in for a folder the books came from.
    Loads recorded into `other_versions` (the ledger keys of the collection's other versions)
    are no drift."""
    stamp = store.stamp()
    held = Holdings({}, {})
    if stamp is not None:
        held = holdings(store, read_pipeline_id(ledger), ledger.entries(stamp))
    require_books_folder(books_folder, _files_held(held.mine, ledger, stamp))
    review = review_books_folder(books_folder, ledger, stamp, held.mine, other_versions)
    return Listing(review, stamp, held.mine, held.others)


def _files_held(
    stored_counts: dict[str, int], ledger: LoadLedger, stamp: CollectionStamp | None
) -> set[str]:
    """The files whose books the collection holds, or the ledger records as loaded into it."""
    loaded = ledger.entries(stamp).values()
    return {*stored_counts, *(e.file_name for e in loaded if e.state is FileState.LOADED)}


def load_books(
    store: BookVectorStore,
    ledger: LoadLedger,
    books_folder: Path,
    files: Sequence[tuple[ParsedBookFile, np.ndarray]],
    model_name: str,
    remove_books_of_deleted_files: bool,
    tokens: Mapping[str, int] | None = None,
    max_removed_files: int | None = None,
) -> LoadOutcome:
    """Replace each file's books, remove what deleted files left, then record it all (with
    `tokens`, what embedding each file cost, by file name, when the model is billed by them).

    Unless the removal guard holds them back (`removal_guard`): past `max_removed_files`
    (None: the default limit), or with an empty folder, no book is removed and the outcome
    says which files would have gone.

    Points first, then the collection's load sequence, then the ledger: a crash anywhere
    leaves a record that claims no more than the store holds, and the next listing reloads
    whatever the record does not cover (the same point ids: nothing is duplicated).
    """
    if files:
        store.ensure_collection(files[0][1].shape[1], model_name)
    stamp = store.stamp()
    owner = _admit_load(store, ledger, books_folder, files, stamp)
    books_loaded = _replace_books(store, files, owner)
    review = review_books_folder(books_folder, ledger, stamp, store.stored_counts(owner))
    held = None
    if remove_books_of_deleted_files:
        loaded_files = loaded_file_count(ledger.entries(stamp)) if stamp is not None else 0
        held = hold_removals(review, books_folder, loaded_files, max_removed_files)
    if held is not None:
        # Nothing removed, nothing recorded as removed: the files stay loaded in the record.
        review = replace(review, removed=[], orphans=[])
    elif remove_books_of_deleted_files:
        store.remove_books(
            [entry.file_name for entry in review.removed] + review.orphans, owner=owner
        )
    load_sequence = _record_load(
        store, ledger, stamp, files, review, tokens, books_kept=not remove_books_of_deleted_files
    )
    return LoadOutcome(books_loaded, review, store.count(), load_sequence, held)


def _admit_load(
    store: BookVectorStore,
    ledger: LoadLedger,
    books_folder: Path,
    files: Sequence[tuple[ParsedBookFile, np.ndarray]],
    stamp: CollectionStamp | None,
) -> str:
    """This pipeline's id, once the load may go ahead: the books folder is the real one, no file
    is another pipeline's, and the books this pipeline loaded before the id are claimed."""
    owner = pipeline_id(ledger)
    entries = ledger.entries(stamp)
    before = holdings(store, owner, entries)
    require_books_folder(books_folder, _files_held(before.mine, ledger, stamp))
    refuse_other_pipelines_files(
        before, [parsed.file_name for parsed, _ in files], store.collection, store.location
    )
    claim_recorded_books(store, owner, entries)
    return owner


def _replace_books(
    store: BookVectorStore, files: Sequence[tuple[ParsedBookFile, np.ndarray]], owner: str
) -> int:
    """Upsert every file first, then delete what they no longer hold: a crash in between
    leaves stale books for the next run to remove, never a file without its books."""
    books_loaded = 0
    for parsed, vectors in files:
        books_loaded += store.upsert_books(parsed.books, vectors, parsed.sha256, owner)
        fail_point(AFTER_FIRST_BATCH)
    store.remove_books(
        [parsed.file_name for parsed, _ in files],
        keep_ids=[
            book_point_id(book.source_file, book.index)
            for parsed, _ in files
            for book in parsed.books
        ],
        owner=owner,
    )
    return books_loaded


def _record_load(
    store: BookVectorStore,
    ledger: LoadLedger,
    stamp: CollectionStamp | None,
    files: Sequence[tuple[ParsedBookFile, np.ndarray]],
    review: FolderReview,
    tokens: Mapping[str, int] | None,
    books_kept: bool,
) -> int:
    """The collection's load sequence, then the ledger; returns the load's sequence number."""
    generation: str | None = None
    load_sequence = 0
    if stamp is not None:
        load_sequence = stamp.load_sequence + 1
        generation = store.record_load(load_sequence)
        if stamp.generation is None:
            ledger.adopt_previous_release(generation)
    fail_point(BEFORE_RECORDING_THE_LOAD)
    if generation is not None:
        ledger.record_loaded((parsed for parsed, _ in files), generation, load_sequence, tokens)
    ledger.record_removed(
        review.removed, generation or ANY_COLLECTION, load_sequence, books_kept=books_kept
    )
    return load_sequence


def load_embedded_files(
    store: BookVectorStore,
    ledger: LoadLedger,
    books_folder: Path,
    embedded_files: Sequence[EmbeddedBookFile],
    model_name: str,
    remove_books_of_deleted_files: bool,
    billed_by_token: bool,
    price_per_mtok: float | None,
    max_removed_files: int | None = None,
) -> LoadSummary:
    """`load_books` for a run's embedded files, and what it did and cost."""
    outcome = load_books(
        store,
        ledger,
        books_folder,
        [(embedded.file, embedded.vectors) for embedded in embedded_files],
        model_name,
        remove_books_of_deleted_files,
        {e.file.file_name: e.tokens for e in embedded_files} if billed_by_token else None,
        max_removed_files,
    )
    # From the vectors or the collection, not the model: asking a remote one costs a request.
    dimension: int | None = None
    if embedded_files:
        dimension = embedded_files[0].vectors.shape[1]
    elif outcome.collection_size:
        dimension, _ = store.collection_model()
    bill = EmbeddingBill(
        model_name=model_name,
        billed_by_token=billed_by_token,
        texts_from_cache=sum(e.cache_hits for e in embedded_files),
        tokens=sum(e.tokens for e in embedded_files),
        tokens_saved=sum(e.tokens_saved or 0 for e in embedded_files),
        compute_seconds=sum(e.seconds for e in embedded_files),
        price_per_mtok=price_per_mtok,
    )
    review = outcome.review
    counts = {
        "files_processed": len(embedded_files),
        "books_loaded": outcome.books_loaded,
        "files_removed": len(review.removed),
        "orphan_files_removed": len(review.orphans) if remove_books_of_deleted_files else 0,
        "removals_held": len(outcome.held_removal.files) if outcome.held_removal else 0,
        "failed_files_skipped": len(review.failed_unchanged),
        "collection_size": outcome.collection_size,
        "embedding_model": model_name,
        "embedding_dimension": dimension,
        "embedding_cache_hits": sum(e.cache_hits for e in embedded_files),
        "embedding_cache_misses": sum(e.cache_misses for e in embedded_files),
        **bill.counts(),
        "load_sequence": outcome.load_sequence,
    }
    return LoadSummary(
        counts=counts,
        loaded_files=sorted(e.file.file_name for e in embedded_files),
        failed_files={entry.file_name: entry.error for entry in review.failed_unchanged},
        bill=bill,
        held_removal=outcome.held_removal,
    )

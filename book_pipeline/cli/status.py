"""`book-pipeline status`: every description file and its state, from the folder and the load
ledger, against the books the store actually holds of each; never loads the model."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.books.folders import (
    DEFAULT_BOOKS_DIR,
    is_sample_folder,
)
from book_pipeline.core.settings import Settings

if TYPE_CHECKING:
    from book_pipeline.core.ingest.folder_review import FolderReview
    from book_pipeline.core.ingest.ledger import LoadLedger
    from book_pipeline.core.store.base import CollectionStamp
    from book_pipeline.core.store.versions import VersionCatalog

# A running load holds the embedded store for its whole write: status shows the record alone
# rather than wait for it.
STATUS_LOCK_WAIT_SECONDS = 0.5


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    status = subcommands.add_parser(
        "status",
        help="list every description file with its state: loaded, pending, failed, removed",
        description="Compare the books folder with the load ledger (what runs loaded) and with "
        "the store (how many books of each file it holds), naming any file whose books the "
        "store does not hold as recorded. While a load holds the embedded store, the record is "
        "shown alone. Reads no model and no Dagster.",
    )
    status.add_argument("--json", action="store_true", help="print the files as JSON")
    status.set_defaults(handler=run_status)


@dataclass(frozen=True)
class FolderReading:
    """The books folder against the ledger and, when it could be read, the store."""

    review: FolderReview
    stamp: CollectionStamp | None
    # None: a running load held the embedded store, so its books were not counted.
    stored_counts: dict[str, int] | None
    location: str
    collection: str
    # While a new model's version is built: what that is, and how far it got.
    rebuild: list[str] = field(default_factory=list)
    # The points of other pipelines (or of none this one recorded), by file; None: not counted.
    others: dict[str, int] | None = None


def read_books_folder(settings: Settings, ledger: LoadLedger) -> FolderReading:
    """What the next run would load: the listing the run makes, or, while a load holds the
    embedded store, what the ledger alone says (the store's counts are not read)."""
    from book_pipeline.core.embedding.choosing import recorded_model_name
    from book_pipeline.core.ingest.folder_review import review_books_folder
    from book_pipeline.core.ingest.loading import list_files_to_load
    from book_pipeline.core.ingest.rebuild import (
        LoadingVersions,
        plan_versions,
        read_loading_stamp,
    )
    from book_pipeline.core.store.errors import StoreLockedError
    from book_pipeline.core.store.opening import open_configured_versions

    books_folder = settings.books_folder
    model = recorded_model_name(settings.embedder_choice)
    try:
        with open_configured_versions(
            settings, say, lock_wait_seconds=STATUS_LOCK_WAIT_SECONDS, read_only=True
        ) as catalog:
            # The version the next run loads into: a new one while a model change is rebuilt.
            versions = LoadingVersions(catalog, plan_versions(catalog, model))
            store = versions.target or versions.current
            listing = (
                versions.list_target(ledger, books_folder)
                if versions.target is not None
                else list_files_to_load(store, ledger, books_folder)
            )
            location, collection = store.location, store.collection
            rebuild = _describe_rebuild(catalog, settings, ledger)
        return FolderReading(
            listing.review,
            listing.stamp,
            listing.stored_counts,
            location,
            collection,
            rebuild,
            listing.others,
        )
    except StoreLockedError:
        plan, stamp = read_loading_stamp(settings.collection, settings.edge_path, None, None, model)
        location = str(settings.edge_path.resolve())
        say(
            f"a running load holds the embedded store {location}: the books it holds are not "
            "counted, the ledger's record is shown alone"
        )
        return FolderReading(
            review_books_folder(books_folder, ledger, stamp),
            stamp,
            None,
            location,
            plan.target or plan.current,
            [plan.describe()] if plan.target is None or plan.rebuilding else [],
        )
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    except store_errors() as error:
        raise CliError(str(error)) from None


def _describe_rebuild(catalog: VersionCatalog, settings: Settings, ledger: LoadLedger) -> list[str]:
    """The versions, when there is more than one (`book-pipeline versions`)."""
    from book_pipeline.cli.versions import describe_versions, format_versions

    if len(catalog.names()) < 2:
        return []
    return ["collection versions:", format_versions(describe_versions(catalog, settings, ledger))]


def run_status(args: argparse.Namespace) -> int:
    from book_pipeline.core.embedding.choosing import configured_model_name
    from book_pipeline.core.embedding.costs import price_per_mtok
    from book_pipeline.core.ingest.ledger import LoadLedger
    from book_pipeline.core.ingest.progress import backfill_progress
    from book_pipeline.core.ingest.removal_guard import hold_removals, loaded_file_count
    from book_pipeline.core.ingest.status import (
        folder_status,
        format_cost_total,
        format_status_table,
    )

    settings = Settings.from_environment()
    books_folder = settings.books_folder
    ledger = LoadLedger(settings.ledger_path)
    reading = read_books_folder(settings, ledger)
    review, stamp = reading.review, reading.stamp
    location, collection = reading.location, reading.collection
    model = configured_model_name(settings.embedder_choice)
    price = price_per_mtok(settings.embedder, model, settings.embedding_price_per_mtok)
    entries = ledger.entries(stamp)
    held = hold_removals(
        review, books_folder, loaded_file_count(entries), settings.max_removed_files_per_run
    )
    held_files = held.files if held is not None else []
    rows = folder_status(review, entries, reading.stored_counts, price, held_files)
    if args.json:
        print(json.dumps([asdict(row) for row in rows], ensure_ascii=False, indent=2))
    else:
        print(f"books folder: {_describe_books_folder(books_folder)}")
        state = "does not exist yet" if stamp is None else f"load {stamp.load_sequence}"
        print(f"store: Qdrant collection {collection!r} at {location} ({state})")
        for line in reading.rebuild:
            print(line)
        print(format_status_table(rows))
        if progress := backfill_progress(entries.values(), review.pending, time.time()):
            print(progress.describe())
        if cost_total := format_cost_total(rows, price, model):
            print(cost_total)
        if reading.others:
            books = sum(reading.others.values())
            print(
                f"not this pipeline's: {books} book(s) of {len(reading.others)} file(s) in the "
                "collection were loaded by another pipeline (or one whose ledger was lost); "
                "they are left alone"
            )
        if held is not None:
            print(held.describe())
        if review.drifted:
            print(
                f"{len(review.drifted)} file(s) recorded as loaded are not held by the store as "
                "recorded: the next run (or the sensor) loads them again"
            )
    return EXIT_OK


def _describe_books_folder(folder: Path) -> str:
    if not is_sample_folder(folder):
        return str(folder)
    return (
        f"{folder} (the bundled samples, read while {Path(DEFAULT_BOOKS_DIR).resolve()} does not "
        "exist; book-pipeline add-books creates it)"
    )

"""A pipeline removes only what it loaded: several pipelines (each its own data folder and books
folder) may share one server collection, and a pipeline may start with a fresh data folder
against a collection that already holds books.

A pipeline is its data folder: its id is made once and kept beside the ledger's table, in the
same sqlite file, and every point it loads carries that id in its payload (`PIPELINE_FIELD`,
indexed). Its books are the points with its id, plus, from a collection loaded before pipelines
were told apart, the unclaimed points of the files its ledger records as loaded into this
collection: its next load claims those (their payload gains the id; nothing is embedded again).
Every other point is "not this pipeline's": counted, never removed, never overwritten.

Point ids stay the file name and index (`book_point_id`), so two pipelines cannot both hold a
file of the same name in one collection: a load that would overwrite another pipeline's books
is refused, naming the files, before it writes anything.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass

from book_pipeline.core.ingest.ledger import FileState, LedgerEntry, LoadLedger
from book_pipeline.core.store.base import UNCLAIMED, BookVectorStore

_TABLE = "CREATE TABLE IF NOT EXISTS pipeline_identity (pipeline_id TEXT NOT NULL)"


class OtherPipelinesFilesError(RuntimeError):
    """A load would overwrite the books another pipeline loaded into the shared collection."""


@dataclass(frozen=True)
class Holdings:
    """The collection's points of each source file: this pipeline's, and the rest."""

    mine: dict[str, int]
    others: dict[str, int]

    @property
    def others_total(self) -> int:
        return sum(self.others.values())


def read_pipeline_id(ledger: LoadLedger) -> str | None:
    """The data folder's pipeline id; None while it has never loaded (read without writing)."""
    if not ledger.path.exists():
        return None
    with closing(sqlite3.connect(ledger.path, timeout=30)) as connection:
        try:
            row = connection.execute("SELECT pipeline_id FROM pipeline_identity").fetchone()
        except sqlite3.OperationalError:  # no table yet: a ledger of an earlier release
            return None
    return None if row is None else str(row[0])


def pipeline_id(ledger: LoadLedger) -> str:
    """The data folder's pipeline id, made on first use (one, whichever process asks first)."""
    ledger.path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(ledger.path, timeout=30)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(_TABLE)
        row = connection.execute("SELECT pipeline_id FROM pipeline_identity").fetchone()
        if row is None:
            row = (uuid.uuid4().hex,)
            connection.execute("INSERT INTO pipeline_identity VALUES (?)", row)
        connection.execute("COMMIT")
    return str(row[0])


def recorded_files(entries: dict[str, LedgerEntry]) -> set[str]:
    """The files whose books the ledger says this pipeline put in the collection and left
    there: loaded, or gone from the folder with their books kept."""
    return {
        name
        for name, entry in entries.items()
        if entry.state is FileState.LOADED or (entry.state is FileState.REMOVED and entry.books)
    }


def holdings(
    store: BookVectorStore, owner: str | None, entries: dict[str, LedgerEntry]
) -> Holdings:
    """Which of the collection's points are this pipeline's (`owner`: its id, None before its
    first load), from exact counts: its own, and the unclaimed ones of files it recorded."""
    every = store.stored_counts()
    if not every:
        return Holdings({}, {})
    owned = store.stored_counts(owner) if owner else {}
    recorded = recorded_files(entries)
    unclaimed = store.stored_counts(UNCLAIMED) if recorded else {}
    mine = {
        name: owned.get(name, 0) + (unclaimed.get(name, 0) if name in recorded else 0)
        for name in every
    }
    mine = {name: count for name, count in mine.items() if count}
    others = {name: every[name] - mine.get(name, 0) for name in every}
    return Holdings(mine, {name: count for name, count in others.items() if count})


def claim_recorded_books(
    store: BookVectorStore, owner: str, entries: dict[str, LedgerEntry]
) -> None:
    """Stamp this pipeline's id on the unclaimed books of the files its ledger recorded (and
    index the field, which a collection made before pipelines were told apart lacks)."""
    claimed = sorted(recorded_files(entries) & set(store.stored_counts(UNCLAIMED)))
    if claimed:
        store.claim_books(claimed, owner)


def refuse_other_pipelines_files(
    holdings_now: Holdings, file_names: Iterable[str], collection: str, location: str
) -> None:
    """Refuse a load whose files' names another pipeline's books use in this collection."""
    taken = sorted(set(file_names) & set(holdings_now.others))
    if taken:
        raise OtherPipelinesFilesError(
            f"the Qdrant collection {collection!r} at {location} holds books of "
            f"{', '.join(taken)} that another pipeline loaded (another data folder, or one "
            "whose ledger was lost): loading this pipeline's files of the same name would "
            "overwrite them. Rename these files, or use a collection of your own "
            "(BOOK_PIPELINE_COLLECTION); nothing was written"
        )


def points_of_other_pipelines(store: BookVectorStore, ledger: LoadLedger) -> int:
    """How many of the collection's points are not this pipeline's (read, never written)."""
    entries = ledger.entries(store.stamp())
    return holdings(store, read_pipeline_id(ledger), entries).others_total

"""A change of embedding model: where runs load (the current version, or a new one being built
beside it), how far that rebuild got, and the rule that decides whether it may become current.

While the configured model is not the current version's, every run loads into the version of
the configured model (a new one at first), through the same listing, embedding cache and token
budget as any run, so a large catalogue is rebuilt over several runs. Search reads the current
version meanwhile. Deleted files are removed from both versions; new and changed files are
loaded into the new one only, which holds every file of the folder before it can be switched to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME
from book_pipeline.core.embedding.costs import (
    OPENAI_EMBEDDING_PRICES_PER_MTOK,
    cost_usd,
    describe_cost,
    describe_price,
)
from book_pipeline.core.ingest.ledger import FileState, LoadLedger, ledger_key
from book_pipeline.core.ingest.loading import (
    Listing,
    LoadSummary,
    list_files_to_load,
    load_books,
    load_embedded_files,
)
from book_pipeline.core.settings import MODEL_SWITCH_RULES, EmbedderChoice
from book_pipeline.core.store.base import BookVectorStore, CollectionStamp
from book_pipeline.core.store.edge_folder import read_edge_stamp
from book_pipeline.core.store.edge_versions import EdgeVersionCatalog
from book_pipeline.core.store.versions import (
    EmbedderRecord,
    VersionCatalog,
    VersionError,
    VersionRecord,
)

if TYPE_CHECKING:
    # Only its fields are read: `status` and the sensor do not pay for the cache.
    from book_pipeline.core.embedding.book_file import EmbeddedBookFile

# The rules a rebuilt version must pass to become current (BOOK_PIPELINE_MODEL_SWITCH_RULE).
SWITCH_RULES = MODEL_SWITCH_RULES
AT_LEAST_AS_MANY, EVERY_PROBE, MANUAL = SWITCH_RULES


@dataclass(frozen=True)
class VersionPlan:
    """Where runs load now. `target` is the current version unless the model changed; None
    when the configured model's version was rolled back (nothing loads until the configured
    model or the current version changes)."""

    current: str
    target: str | None
    model: str
    current_model: str | None

    @property
    def rebuilding(self) -> bool:
        return self.target is not None and self.target != self.current

    def describe(self) -> str:
        if self.target is None:
            return (
                f"the configured model {self.model!r} was rolled back: the current version "
                f"{self.current!r} was built with {self.current_model!r}. Configure that model "
                "again, or switch to the configured model's version (book-pipeline versions "
                "switch); nothing is loaded meanwhile"
            )
        if self.rebuilding:
            return (
                f"the embedding model changed from {self.current_model!r} to {self.model!r}: "
                f"building {self.target!r} beside the current version {self.current!r}, which "
                "search reads until the new one is complete and checked"
            )
        return f"loading into the current version {self.current!r}"


def plan_versions(catalog: VersionCatalog, model_name: str) -> VersionPlan:
    current = catalog.current_name()
    names = catalog.names()
    current_model = catalog.model_of(current) if current in names else None
    # Nothing yet, or a collection that recorded no model (judged by its vector size alone).
    if current_model is None or current_model == model_name:
        return VersionPlan(current, current, model_name, current_model)
    existing = catalog.version_for_model(model_name)
    if existing is not None and catalog.read_record(existing).rolled_back:
        return VersionPlan(current, None, model_name, current_model)
    return VersionPlan(current, existing or catalog.next_name(), model_name, current_model)


@dataclass
class LoadingVersions:
    """An open catalog with its plan: the version runs load into, and the current one."""

    catalog: VersionCatalog
    plan: VersionPlan

    @property
    def target(self) -> BookVectorStore | None:
        return None if self.plan.target is None else self.catalog.open(self.plan.target)

    @property
    def current(self) -> BookVectorStore:
        return self.catalog.open(self.plan.current)

    def list_target(self, ledger: LoadLedger, books_folder: Path) -> Listing:
        """The folder against the target version: a file loaded into another version of the
        collection (the current one, during a rebuild) is pending there, not drifted."""
        target = self.target
        assert target is not None, "no target while the configured model's version is rolled back"
        others = [
            ledger_key(stamp)
            for name in self.catalog.names()
            if name != target.collection and (stamp := self.catalog.open(name).stamp())
        ]
        return list_files_to_load(target, ledger, books_folder, others)


@dataclass(frozen=True)
class LoadOptions:
    """What the load step passes on about its model and configuration."""

    model_name: str
    remove_books_of_deleted_files: bool
    billed_by_token: bool
    price_per_mtok: float | None
    embedder: EmbedderRecord
    # The removal guard's limit (core/ingest/removal_guard.py), for both versions.
    max_removed_files: int | None = None


def load_into_target(
    versions: LoadingVersions,
    ledger: LoadLedger,
    books_folder: Path,
    embedded_files: Sequence[EmbeddedBookFile],
    options: LoadOptions,
) -> tuple[LoadSummary, str, str]:
    """The run's files loaded into the version runs load into (`after_load` then); the load's
    summary, and that version's collection and location. `VersionError` while the configured
    model's version is rolled back."""
    store = versions.target
    if store is None:
        raise VersionError(versions.plan.describe())
    summary = load_embedded_files(
        store,
        ledger,
        books_folder,
        embedded_files,
        options.model_name,
        options.remove_books_of_deleted_files,
        options.billed_by_token,
        options.price_per_mtok,
        options.max_removed_files,
    )
    after_load(versions, ledger, books_folder, options)
    return summary, store.collection, store.location


def after_load(
    versions: LoadingVersions, ledger: LoadLedger, books_folder: Path, options: LoadOptions
) -> None:
    """What a load into the target leaves to do: record the embedder the target is built with
    (a version of an earlier release gets its record here), and, during a rebuild, remove the
    deleted files' books from the current version too (within the same removal guard)."""
    plan, catalog = versions.plan, versions.catalog
    if plan.target is None or plan.target not in catalog.names():
        return
    record = catalog.read_record(plan.target)
    if record.embedder is None:
        catalog.write_record(plan.target, replace(record, embedder=options.embedder))
    catalog.ensure_pointer()
    current = versions.current
    if plan.rebuilding and current.collection_exists() and plan.current_model is not None:
        load_books(
            current,
            ledger,
            books_folder,
            [],
            plan.current_model,
            options.remove_books_of_deleted_files,
            max_removed_files=options.max_removed_files,
        )


@dataclass(frozen=True)
class RebuildProgress:
    """How far the target version got, from its listing and the ledger's records of it."""

    target: str
    files_loaded: int
    files_pending: int
    files_refused: int
    books_loaded: int
    # The books the current version holds: what the rebuild is heading for.
    books_in_current: int
    tokens: int
    billed_by_token: bool

    @property
    def files_total(self) -> int:
        return self.files_loaded + self.files_pending

    @property
    def complete(self) -> bool:
        return self.files_pending == 0

    def describe(self, price_per_mtok: float | None, model: str) -> str:
        text = (
            f"rebuild into {self.target!r}: {self.files_loaded} of {self.files_total} file(s), "
            f"{self.books_loaded} book(s) loaded (the current version holds "
            f"{self.books_in_current})"
        )
        if self.files_refused:
            text += f", {self.files_refused} refused file(s) left out"
        if self.billed_by_token:
            cost = describe_cost(cost_usd(self.tokens, price_per_mtok))
            text += (
                f"; cost so far: {self.tokens} token(s), {cost} "
                f"({describe_price(model, price_per_mtok)})"
            )
        return text


def rebuild_progress(
    versions: LoadingVersions, ledger: LoadLedger, books_folder: Path, billed_by_token: bool
) -> tuple[RebuildProgress, Listing]:
    target = versions.target
    assert target is not None, "no rebuild while the configured model's version is rolled back"
    listing = versions.list_target(ledger, books_folder)
    loaded = [
        entry
        for entry in ledger.entries(listing.stamp).values()
        if entry.state is FileState.LOADED
        and entry.file_name not in {snapshot.name for snapshot in listing.review.pending}
    ]
    progress = RebuildProgress(
        target=target.collection,
        files_loaded=len(loaded),
        files_pending=len(listing.review.pending),
        files_refused=len(listing.review.failed_unchanged),
        books_loaded=sum(entry.books for entry in loaded),
        books_in_current=versions.current.count(),
        tokens=sum(entry.tokens or 0 for entry in loaded),
        billed_by_token=billed_by_token,
    )
    return progress, listing


def switch_allowed(rule: str, old_found: int, new_found: int, new_probes: int) -> bool:
    """Whether the rebuilt version's probes pass `rule` against the current version's."""
    if rule == AT_LEAST_AS_MANY:
        return new_found >= old_found
    if rule == EVERY_PROBE:
        return new_found == new_probes
    if rule == MANUAL:
        return False
    raise ValueError(f"unknown switch rule {rule!r}: expected one of {', '.join(SWITCH_RULES)}")


def version_embedder_choice(
    record: VersionRecord,
    collection_model: str | None,
    configured: EmbedderChoice,
    configured_model: str,
) -> EmbedderChoice | None:
    """The embedder that makes a version's query vectors: the one it recorded, else (a
    collection of an earlier release, until its next load records it) the configured one when
    its model is the collection's, the bundled model when that built it, an OpenAI model by its
    name. None: unknown (search then refuses, naming the collection's model)."""
    if record.embedder is not None:
        embedder = record.embedder
        return replace(
            configured,
            provider=embedder.provider,
            model=embedder.model,
            dimensions=embedder.dimensions,
        )
    if collection_model is None or collection_model == configured_model:
        return configured
    if collection_model == LOCAL_MODEL_NAME:
        return replace(configured, provider="local", model=None, dimensions=None)
    if collection_model in OPENAI_EMBEDDING_PRICES_PER_MTOK:
        return replace(configured, provider="openai", model=collection_model, dimensions=None)
    return None


def current_version(
    catalog: VersionCatalog, configured: EmbedderChoice, configured_model: str
) -> tuple[BookVectorStore, EmbedderChoice]:
    """The version search reads, and the embedder its queries need (the configured one when
    nothing says otherwise: the model check then refuses a mismatch by name)."""
    name = catalog.current_name()
    store = catalog.open(name)
    model = store.collection_model()[1] if store.collection_exists() else None
    record = catalog.read_record(name) if name in catalog.names() else VersionRecord()
    choice = version_embedder_choice(record, model, configured, configured_model)
    return store, choice or configured


def read_loading_stamp(
    collection: str, local_path: Path, url: str | None, api_key: str | None, model_name: str
) -> tuple[VersionPlan, CollectionStamp | None]:
    """Where runs load for `model_name`, and that version's stamp, without the embedded store's
    lock (its pointer file and manifests are replaced whole; a sensor asks while a load holds
    the lock), or with a few requests to a server."""
    if url:
        from book_pipeline.core.store.server_opening import open_server_store
        from book_pipeline.core.store.server_versions import ServerVersionCatalog

        store = open_server_store(collection, url, api_key, None)
        try:
            catalog = ServerVersionCatalog(store, collection)
            plan = plan_versions(catalog, model_name)
            return plan, None if plan.target is None else catalog.open(plan.target).stamp()
        finally:
            store.close()
    folder = local_path.expanduser().resolve()
    plan = plan_versions(EdgeVersionCatalog(folder, collection), model_name)
    return plan, None if plan.target is None else read_edge_stamp(folder, plan.target)

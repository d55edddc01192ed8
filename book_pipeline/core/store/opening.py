"""Opening the store the configuration names: the one way the pipeline, the CLI and
`migrate-store` open a collection, and the sensor reads its stamp.

On top of the engines: a URL opens a Qdrant server (`server`, imported only then, so the
embedded path never pays for qdrant-client), else the Edge shard under the data folder
(`edge`), after copying the previous version's store into it when the shard does not exist yet
(`legacy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from book_pipeline.core.settings import CollectionSettings, Settings
from book_pipeline.core.store.base import BookVectorStore, CollectionStamp
from book_pipeline.core.store.edge_folder import read_edge_stamp
from book_pipeline.core.store.edge_opening import open_edge_store
from book_pipeline.core.store.edge_versions import EdgeVersionCatalog, current_edge_version
from book_pipeline.core.store.legacy import local_mode_has_collection, upgrade_local_mode_store
from book_pipeline.core.store.read_only import tell_copy_waits
from book_pipeline.core.store.versions import VersionCatalog


@contextmanager
def open_store_versions(
    collection: str,
    local_path: Path,
    url: str | None = None,
    api_key: str | None = None,
    lock_wait_seconds: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    settings: CollectionSettings | None = None,
    legacy_path: Path | None = None,
    read_only: bool = False,
) -> Iterator[VersionCatalog]:
    """The versions of `collection` (`versions`): a server's when a URL is given, else the Edge
    store's under `local_path`, locked until closed.

    `read_only`: for a read (`read_only` module), which upgrades nothing: a shard of the release
    before keyword vectors stays as it is, and the previous version's store is read in place
    rather than copied; both answer dense searches until the next load upgrades them.

    A server connection locks nothing: loads and searches in other processes run side by side.
    `legacy_path` is the previous version's embedded store (qdrant-client local mode): a
    collection found there, while no version of it exists in `local_path`, is copied over first
    as version 1 (`legacy`). `on_wait` is told why the open takes time: a lock held elsewhere,
    or that copy.
    """
    catalog: VersionCatalog
    if url:
        from book_pipeline.core.store.server_opening import open_server_store
        from book_pipeline.core.store.server_versions import ServerVersionCatalog

        server_store = open_server_store(collection, url, api_key, settings)
        store: BookVectorStore = server_store
        catalog = ServerVersionCatalog(server_store, collection)
    else:
        folder = local_path.expanduser().resolve()
        # Read again under the lock: the shard opened first is the current one, mostly.
        current = current_edge_version(folder, collection) if folder.exists() else collection
        store = _open_embedded_store(
            current, folder, lock_wait_seconds, on_wait, settings, legacy_path, read_only
        )
        catalog = EdgeVersionCatalog(folder, collection, settings, primary=store)
    try:
        yield catalog
    finally:
        try:
            catalog.close()
        finally:
            store.close()


@contextmanager
def open_vector_store(
    collection: str,
    local_path: Path,
    url: str | None = None,
    api_key: str | None = None,
    lock_wait_seconds: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    settings: CollectionSettings | None = None,
    legacy_path: Path | None = None,
    read_only: bool = False,
) -> Iterator[BookVectorStore]:
    """The current version of `collection` (`open_store_versions`), which search reads."""
    with open_store_versions(
        collection,
        local_path,
        url,
        api_key,
        lock_wait_seconds,
        on_wait,
        settings,
        legacy_path,
        read_only,
    ) as catalog:
        yield catalog.open(catalog.current_name())


def _open_embedded_store(
    collection: str,
    folder: Path,
    lock_wait_seconds: float,
    on_wait: Callable[[str], None] | None,
    settings: CollectionSettings | None,
    legacy_path: Path | None,
    read_only: bool,
) -> BookVectorStore:
    store = open_edge_store(collection, folder, lock_wait_seconds, on_wait, settings, read_only)
    # Only while there is no version at all: version 1 removed after a switch is not copied back.
    if (
        legacy_path is None
        or store.collection_exists()
        or EdgeVersionCatalog(folder, collection).names()
    ):
        return store
    if read_only:
        if not local_mode_has_collection(legacy_path, collection):
            return store
        store.close()
        from book_pipeline.core.store.server_opening import open_local_mode_store

        tell_copy_waits(str(legacy_path), on_wait)
        return open_local_mode_store(legacy_path, collection)
    try:
        upgrade_local_mode_store(legacy_path, store, on_wait)
    except BaseException:
        store.close()
        raise
    return store


def read_collection_stamp(
    collection: str, local_path: Path, url: str | None = None, api_key: str | None = None
) -> CollectionStamp | None:
    """The collection's stamp without opening the embedded store (its manifest is read, no lock
    is taken: a load may hold it), or with one request to a server. None: no collection."""
    if url:
        from book_pipeline.core.store.server_opening import open_server_store

        store = open_server_store(collection, url, api_key, None)
        try:
            return store.stamp()
        finally:
            store.close()
    return read_edge_stamp(local_path, collection)


@contextmanager
def open_configured_store(
    settings: Settings,
    on_wait: Callable[[str], None] | None = None,
    lock_wait_seconds: float | None = None,
    read_only: bool = False,
) -> Iterator[BookVectorStore]:
    """The current version of the collection the settings name, opened as the pipeline opens
    it (`open_vector_store`)."""
    with open_configured_versions(settings, on_wait, lock_wait_seconds, read_only) as catalog:
        yield catalog.open(catalog.current_name())


def open_configured_versions(
    settings: Settings,
    on_wait: Callable[[str], None] | None = None,
    lock_wait_seconds: float | None = None,
    read_only: bool = False,
) -> AbstractContextManager[VersionCatalog]:
    """The versions of the collection the settings name (`open_store_versions`)."""
    return open_store_versions(
        settings.collection,
        settings.edge_path.expanduser().resolve(),
        settings.qdrant_url,
        settings.qdrant_api_key,
        lock_wait_seconds=(
            settings.lock_wait_seconds if lock_wait_seconds is None else lock_wait_seconds
        ),
        on_wait=on_wait,
        settings=settings.collection_settings,
        legacy_path=settings.legacy_path.expanduser().resolve(),
        read_only=read_only,
    )

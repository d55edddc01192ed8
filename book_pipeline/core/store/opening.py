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
from book_pipeline.core.store.edge import open_edge_store, read_edge_stamp
from book_pipeline.core.store.legacy import local_mode_has_collection, upgrade_local_mode_store
from book_pipeline.core.store.read_only import tell_copy_waits


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
    """A server when a URL is given, else the Edge shard under `local_path` (locked until closed).

    `read_only`: for a read (`read_only` module), which upgrades nothing: a shard of the release
    before keyword vectors stays as it is, and the previous version's store is read in place
    rather than copied; both answer dense searches until the next load upgrades them.

    A server connection locks nothing: loads and searches in other processes run side by side.
    `legacy_path` is the previous version's embedded store (qdrant-client local mode): a
    collection found there and not yet in `local_path` is copied over first (`legacy`).
    `on_wait` is told why the open takes time: a lock held elsewhere, or that copy.
    """
    store: BookVectorStore
    if url:
        from book_pipeline.core.store.server import open_server_store

        store = open_server_store(collection, url, api_key, settings)
    else:
        store = _open_embedded_store(
            collection, local_path, lock_wait_seconds, on_wait, settings, legacy_path, read_only
        )
    try:
        yield store
    finally:
        store.close()


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
    if legacy_path is None or store.collection_exists():
        return store
    if read_only:
        if not local_mode_has_collection(legacy_path, collection):
            return store
        store.close()
        from book_pipeline.core.store.server import open_local_mode_store

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
        from book_pipeline.core.store.server import open_server_store

        store = open_server_store(collection, url, api_key, None)
        try:
            return store.stamp()
        finally:
            store.close()
    return read_edge_stamp(local_path, collection)


def open_configured_store(
    settings: Settings,
    on_wait: Callable[[str], None] | None = None,
    lock_wait_seconds: float | None = None,
    read_only: bool = False,
) -> AbstractContextManager[BookVectorStore]:
    """The store the settings name, opened as the pipeline opens it (`open_vector_store`)."""
    return open_vector_store(
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

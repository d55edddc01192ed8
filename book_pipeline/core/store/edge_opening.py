"""Opening the embedded store: the lock, what a crash left tidied, and a shard of an earlier
release upgraded (its sparse vectors made from the stored payloads) before a load writes to it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.edge import EdgeStore
from book_pipeline.core.store.edge_folder import lock_store_folder, remove_partial_folders
from book_pipeline.core.store.read_only import tell_upgrade_waits


def open_edge_store(
    collection: str,
    folder: Path,
    lock_wait_seconds: float,
    on_wait: Callable[[str], None] | None,
    settings: CollectionSettings | None,
    read_only: bool = False,
) -> EdgeStore:
    """Open (locked) for a load, which tidies what a crash left and upgrades a shard of the
    previous release; `read_only` leaves both for the next load (`store.read_only`)."""
    folder = folder.expanduser().resolve()
    lock_handle = lock_store_folder(folder, lock_wait_seconds, on_wait)
    try:
        if not read_only:
            remove_partial_folders(folder, collection)
        store = EdgeStore(folder, collection, lock_handle, settings)
    except BaseException:
        lock_handle.close()
        raise
    if store.collection_exists() and not store.has_keyword_vectors():
        if read_only:
            tell_upgrade_waits(store, on_wait)
        else:
            _add_keyword_vectors(store, on_wait)
    return store


def _add_keyword_vectors(store: EdgeStore, on_progress: Callable[[str], None] | None) -> None:
    """Upgrade a shard of the previous release in place, or say why it stays dense-only."""

    def tell(message: str) -> None:
        if on_progress is not None:
            on_progress(message)

    tell(
        f"adding accent-folded BM25 keyword vectors and title-and-author trigrams to the Qdrant "
        f"Edge shard {store.shard_path} (once; made from the stored titles, authors and "
        "descriptions, no re-embedding)"
    )
    try:
        copied = store.add_keyword_vectors()
    # Whatever failed (a full or read-only disk, the engine's bare Exception), the old shard is
    # whole and still open: it answers dense searches, and the next open tries again.
    except Exception as error:
        tell(
            f"could not add keyword vectors to {store.shard_path} ({error}); it is left as it "
            "was and answers dense searches only until an open succeeds in adding them"
        )
        return
    tell(f"added keyword vectors to {copied:,} points in {store.shard_path}")

"""The previous version's embedded store (qdrant-client local mode), copied once into Edge.

Its folder (`$BOOK_PIPELINE_DATA_DIR/qdrant`) is only read: the first open of an Edge store whose
shard does not exist yet copies the collection over (`opening`), and `book-pipeline migrate-store
--from-legacy` does the same by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from book_pipeline.core.store.base import UPSERT_BATCH_SIZE
from book_pipeline.core.store.copying import copy_collection
from book_pipeline.core.store.edge import EdgeStore
from book_pipeline.core.store.errors import (
    CollectionMismatchError,
    MigrationError,
    StoreLockedError,
)

LEGACY_UPGRADE_COMMAND = "book-pipeline migrate-store --from-legacy"


def local_mode_has_collection(path: Path, collection: str) -> bool:
    """Whether the previous version's store holds the collection, read without opening it.

    qdrant-client's local mode keeps each collection in `collection/<name>/storage.sqlite`.
    """
    return (path / "collection" / collection / "storage.sqlite").is_file()


def upgrade_local_mode_store(
    legacy_path: Path,
    store: EdgeStore,
    on_progress: Callable[[str], None] | None = None,
    batch_size: int = UPSERT_BATCH_SIZE,
) -> int:
    """Copy the collection from the previous version's store into the missing Edge shard.

    Runs once, on the first open of a store whose shard does not exist yet while the old folder
    has the collection. The copy is built beside the shard and moved into place only once its
    count and sampled vectors match; the old folder is only read. Returns the points copied
    (0 when there is nothing to upgrade).
    """
    if store.collection_exists() or not local_mode_has_collection(legacy_path, store.collection):
        return 0
    # Only here: qdrant-client is the one library that reads local mode's files.
    from book_pipeline.core.store.server_opening import open_local_mode_store

    def tell(message: str) -> None:
        if on_progress is not None:
            on_progress(message)

    tell(
        f"copying collection {store.collection!r} of the previous version's Qdrant store "
        f"{legacy_path} into the Qdrant Edge shard {store.shard_path} (once; no re-embedding; "
        "the old folder is left as it is)"
    )
    try:
        source = open_local_mode_store(legacy_path, store.collection)
        try:
            dimension, model_name = source.collection_model()
            with store.staging_collection(dimension, model_name or "unknown") as staging:
                copied = copy_collection(source, staging, batch_size)
        finally:
            source.close()
    except (MigrationError, CollectionMismatchError, StoreLockedError) as error:
        raise MigrationError(
            f"the previous version's Qdrant store {legacy_path} could not be copied into "
            f"{store.shard_path}: {error}. Nothing was changed; run `{LEGACY_UPGRADE_COMMAND} "
            f"{legacy_path}` to try again."
        ) from None
    tell(f"copied and verified {copied:,} points into {store.shard_path}")
    return copied

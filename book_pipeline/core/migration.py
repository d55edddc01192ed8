"""Copying a collection from one Qdrant store to another, vectors and all: no re-embedding.

Both ends are `BookVectorStore`s, so one function copies Edge -> server, server -> Edge, Edge ->
another folder (a backup), and the previous version's embedded store (qdrant-client local mode)
into the Edge shard that replaces it (`upgrade_local_mode_store`, run by the first open).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from book_pipeline.core.vector_store import (
    UPSERT_BATCH_SIZE,
    BookVectorStore,
    CollectionMismatchError,
    StoreLockedError,
)

if TYPE_CHECKING:
    from book_pipeline.core.edge_store import EdgeStore

# Points whose vectors are read back from both ends after a copy.
VERIFY_SAMPLE_SIZE = 64
# Both engines normalise every vector they store for cosine distance, so a copied vector is
# normalised again: float32 rounding moves some components by an ulp or two.
VECTOR_TOLERANCE = 1e-6
LEGACY_UPGRADE_COMMAND = "book-pipeline migrate-store --from-legacy"


class MigrationError(RuntimeError):
    """The copy cannot start, or the target does not hold what was copied."""


def copy_collection(
    source: BookVectorStore,
    target: BookVectorStore,
    batch_size: int = UPSERT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Copy every point of `source` into `target` (same ids, vectors and payloads); return how many.

    The target collection is created like a load would create it (same dimension, cosine, the
    source's model recorded; the target store's layout settings), or must already be one made for
    the same model and dimension. Points are upserted by id, so running it again copies the same
    points onto themselves and leaves the same count. Before it returns, the target's count and a
    sample of its vectors are checked against the source. `on_batch` gets the running total.

    The target then carries the source's generation and load sequence: it holds the same books,
    so the ledger's record of the source counts for it (and a load the source took after the
    copy does not: its files are pending for the target).
    """
    if batch_size < 1:
        raise MigrationError(f"the batch size must be at least 1, got {batch_size}")
    if not source.collection_exists():
        raise MigrationError(
            f"nothing to copy: collection {source.collection!r} does not exist at {source.location}"
        )
    dimension, model_name = source.collection_model()
    if model_name is None:
        raise CollectionMismatchError(
            f"collection {source.collection!r} at {source.location} was not made by "
            "book_pipeline (no embedding model recorded); not copying it"
        )
    target.ensure_collection(dimension, model_name)

    source_count = source.count()
    sample_every = max(1, source_count // VERIFY_SAMPLE_SIZE)
    sample_ids: list[str] = []
    copied = 0
    offset: str | None = None
    while True:
        points, offset = source.scroll(batch_size, offset, with_vectors=True)
        if points:
            target.upsert_points(points)
            sample_ids.extend(
                point.id
                for number, point in enumerate(points, start=copied)
                if number % sample_every == 0
            )
            copied += len(points)
            if on_batch is not None:
                on_batch(copied)
        if offset is None:
            break

    target_count = target.count()
    if copied != source_count or target_count < source_count:
        raise MigrationError(
            f"copied {copied} of the {source_count} points of {source.collection!r}, and the "
            f"target {target.collection!r} at {target.location} holds {target_count}: the copy "
            "is incomplete; run it again (it is safe to repeat)"
        )
    _verify_sample(source, target, sample_ids)
    stamp = source.stamp()
    if stamp is not None and stamp.generation is not None:
        target.record_load(stamp.load_sequence, stamp.generation)
    return copied


def _verify_sample(source: BookVectorStore, target: BookVectorStore, ids: list[str]) -> None:
    originals = {point.id: point for point in source.retrieve(ids, with_vectors=True)}
    copies = {point.id: point for point in target.retrieve(ids, with_vectors=True)}
    for point_id, original in originals.items():
        copy = copies.get(point_id)
        if (
            copy is None
            or copy.payload != original.payload
            or not np.allclose(copy.vector, original.vector, rtol=0, atol=VECTOR_TOLERANCE)
        ):
            raise MigrationError(
                f"point {point_id} of {source.collection!r} differs between {source.location} "
                f"and its copy at {target.location}: the copy is not trustworthy"
            )


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
    from book_pipeline.core.server_store import open_local_mode_store

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

"""Copying a collection from one Qdrant store to another, vectors and all: no re-embedding.

Both ends are `BookVectorStore`s, so one function copies Edge -> server, server -> Edge, Edge ->
another folder (a backup), a dense-only Edge shard into one with keyword vectors (`edge`), and
the previous version's embedded store into the Edge shard that replaces it (`legacy`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from book_pipeline.core.store.base import (
    UPSERT_BATCH_SIZE,
    BookVectorStore,
)
from book_pipeline.core.store.errors import (
    CollectionMismatchError,
    MigrationError,
)

# Points whose vectors are read back from both ends after a copy.
VERIFY_SAMPLE_SIZE = 64
# Both engines normalise every vector they store for cosine distance, so a copied vector is
# normalised again: float32 rounding moves some components by an ulp or two.
VECTOR_TOLERANCE = 1e-6


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
    dimension, model_name = _copyable_collection(source)
    target.ensure_collection(dimension, model_name)
    source_count = source.count()
    copied, sample_ids = _copy_points(source, target, batch_size, source_count, on_batch)
    _check_complete(source, target, copied, source_count)
    _verify_sample(source, target, sample_ids)
    stamp = source.stamp()
    if stamp is not None and stamp.generation is not None:
        target.record_load(stamp.load_sequence, stamp.generation)
    return copied


def _copyable_collection(source: BookVectorStore) -> tuple[int, str]:
    """The source collection's dimension and model; only a collection a load made is copied."""
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
    return dimension, model_name


def _copy_points(
    source: BookVectorStore,
    target: BookVectorStore,
    batch_size: int,
    source_count: int,
    on_batch: Callable[[int], None] | None,
) -> tuple[int, list[str]]:
    """Scroll the source into the target batch by batch; return how many points were copied and
    the ids of about VERIFY_SAMPLE_SIZE of them, spread over the whole collection."""
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
            return copied, sample_ids


def _check_complete(
    source: BookVectorStore, target: BookVectorStore, copied: int, source_count: int
) -> None:
    target_count = target.count()
    if copied != source_count or target_count < source_count:
        raise MigrationError(
            f"copied {copied} of the {source_count} points of {source.collection!r}, and the "
            f"target {target.collection!r} at {target.location} holds {target_count}: the copy "
            "is incomplete; run it again (it is safe to repeat)"
        )


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

"""Copying a collection from one Qdrant store to another, vectors and all: no re-embedding.

Made for moving the embedded store to a Qdrant server (`book-pipeline migrate-store`) and for
backups into another embedded folder. Both ends are `BookVectorStore`s, so the same code copies
to a server or to a folder; only how they were opened differs.
"""

from __future__ import annotations

from collections.abc import Callable

from qdrant_client import models

from book_pipeline.vector_store import (
    UPSERT_BATCH_SIZE,
    BookVectorStore,
    CollectionMismatchError,
)


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
    points onto themselves and leaves the same count. `on_batch` gets the running total.
    """
    if batch_size < 1:
        raise MigrationError(f"the batch size must be at least 1, got {batch_size}")
    if not source.client.collection_exists(source.collection):
        raise MigrationError(f"nothing to copy: collection {source.collection!r} does not exist")
    dimension, model_name = source.collection_model()
    distance = _distance(source)
    if model_name is None or distance != models.Distance.COSINE:
        raise CollectionMismatchError(
            f"collection {source.collection!r} was not made by book_pipeline (no embedding model "
            f"recorded, or {distance} distance instead of cosine); not copying it"
        )
    target.ensure_collection(dimension, model_name)

    source_count = source.count()
    copied = 0
    offset: models.ExtendedPointId | None = None
    while True:
        records, offset = source.client.scroll(
            source.collection,
            limit=batch_size,
            offset=offset,
            with_payload=True,
            with_vectors=True,
        )
        if records:
            target.client.upsert(
                target.collection,
                points=[
                    models.PointStruct(id=record.id, vector=record.vector, payload=record.payload)
                    for record in records
                ],
                wait=True,
            )
            copied += len(records)
            if on_batch is not None:
                on_batch(copied)
        if offset is None:
            break

    target_count = target.count()
    if copied != source_count or target_count < source_count:
        raise MigrationError(
            f"copied {copied} of the {source_count} points of {source.collection!r}, and the "
            f"target {target.collection!r} holds {target_count}: the copy is incomplete; "
            "run it again (it is safe to repeat)"
        )
    return copied


def _distance(store: BookVectorStore) -> models.Distance:
    vectors = store.client.get_collection(store.collection).config.params.vectors
    assert isinstance(vectors, models.VectorParams)  # collection_model() refused named vectors
    return vectors.distance

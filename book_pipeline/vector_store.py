"""The Qdrant collection of books: creating it, checking it matches the model, writing points."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException

from book_pipeline.parsing import BookRecord

# Fixed forever: point ids derive from it, and changing it would duplicate every book.
_BOOK_ID_NAMESPACE = uuid.UUID("6f1d2a8e-3c55-4c1e-9a51-0b9d7f4e2c10")
UPSERT_BATCH_SIZE = 256
_LOCK_POLL_SECONDS = 0.5
_SERVER_TIMEOUT_SECONDS = 30
PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType] = {
    "author": models.PayloadSchemaType.KEYWORD,
    "year": models.PayloadSchemaType.INTEGER,
    "source_file": models.PayloadSchemaType.KEYWORD,
}
# Past this many points the embedded store is the wrong tool: it reads the whole collection into
# memory at every open (~0.5 s at 10,000 points), writes ~600 points/s and scans every point for
# a filter. The load and `book-pipeline search` then advise a server (docs/qdrant.md).
EMBEDDED_STORE_POINT_LIMIT = 20_000


class StoreLockedError(RuntimeError):
    """Another process kept the embedded store open for longer than the configured wait."""


class StoreUnreachableError(RuntimeError):
    """The Qdrant server did not answer; the message names the URL, never the API key."""


class CollectionMismatchError(RuntimeError):
    """The existing collection was built for other vectors; writing into it would corrupt search."""


def book_point_id(source_file: str, index: int) -> str:
    """A book is its file and its index there: a re-run overwrites its point, never adds one."""
    return str(uuid.uuid5(_BOOK_ID_NAMESPACE, f"{source_file}\x1f{index}"))


def book_payload(book: BookRecord, file_sha256: str) -> dict[str, Any]:
    return {
        "title": book.title,
        "author": book.author,
        "year": book.year,
        "description": book.description,
        "book_index": book.index,
        "source_file": book.source_file,
        "line_number": book.line_number,
        "content_hash": book.content_hash,
        "file_sha256": file_sha256,
    }


def book_from_payload(payload: dict[str, Any]) -> BookRecord:
    """The book a point was made from (the inverse of `book_payload`)."""
    return BookRecord(
        index=payload["book_index"],
        title=payload["title"],
        year=payload["year"],
        author=payload["author"],
        description=payload["description"],
        source_file=payload["source_file"],
        line_number=payload["line_number"],
    )


@dataclass(frozen=True)
class CollectionSettings:
    """How a new collection is laid out on a Qdrant server; None leaves the server's default.

    Applied only when the collection is created. The embedded store keeps the vector settings
    in the collection's config (on_disk, hnsw, quantization) but stores everything in memory
    anyway, and ignores the cluster ones (shards, replicas, payload placement).
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_vectors: bool = False
    on_disk_payload: bool | None = None
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    int8_quantization: bool = False

    def vector_params(self, dimension: int) -> models.VectorParams:
        hnsw = None
        if self.hnsw_m is not None or self.hnsw_ef_construct is not None:
            hnsw = models.HnswConfigDiff(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct)
        quantization = None
        if self.int8_quantization:
            # A quarter of the float32 size, kept in RAM while the originals may stay on disk;
            # the 0.99 quantile keeps rare extreme components from widening the int8 range.
            quantization = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                )
            )
        return models.VectorParams(
            size=dimension,
            distance=models.Distance.COSINE,
            # `on_disk` rather than the newer `memory` tier: every server version accepts it.
            on_disk=self.on_disk_vectors or None,
            hnsw_config=hnsw,
            quantization_config=quantization,
        )


class BookVectorStore:
    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        is_server: bool,
        settings: CollectionSettings | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self.is_server = is_server
        self.settings = settings or CollectionSettings()

    def ensure_collection(self, dimension: int, model_name: str) -> None:
        """Create the collection for this model, or check that the existing one was made for it.

        `settings` shape a new collection only: an existing one keeps the layout it was made with.
        """
        if not self.client.collection_exists(self.collection):
            settings = self.settings
            self.client.create_collection(
                self.collection,
                vectors_config=settings.vector_params(dimension),
                shard_number=settings.shard_number,
                replication_factor=settings.replication_factor,
                write_consistency_factor=settings.write_consistency_factor,
                on_disk_payload=settings.on_disk_payload,
                metadata={"embedding_model": model_name, "dimension": dimension},
            )
            # The embedded store ignores payload indexes (and warns); a server needs them.
            if self.is_server:
                for field, schema in PAYLOAD_INDEXES.items():
                    self.client.create_payload_index(self.collection, field, field_schema=schema)
            return
        existing_dimension, existing_model = self.collection_model()
        if existing_dimension != dimension:
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} holds {existing_dimension}-dimensional "
                f"vectors ({existing_model or 'unknown model'}), but the embedder {model_name!r} "
                f"makes {dimension}-dimensional ones. Use another collection "
                "(BOOK_PIPELINE_COLLECTION) or the collection's model."
            )
        if existing_model is not None and existing_model != model_name:
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} was built with {existing_model!r}, not "
                f"{model_name!r}: vectors of two models in one collection cannot be compared. "
                "Use another collection (BOOK_PIPELINE_COLLECTION) or the collection's model."
            )

    def collection_model(self) -> tuple[int, str | None]:
        """The vector size and the embedding model recorded when the collection was created."""
        info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} uses named vectors; it was not made by "
                "book_pipeline"
            )
        metadata = info.config.metadata or {}
        return vectors.size, metadata.get("embedding_model")

    def upsert_books(
        self, books: Sequence[BookRecord], vectors: np.ndarray, file_sha256: str
    ) -> int:
        points = [
            models.PointStruct(
                id=book_point_id(book.source_file, book.index),
                vector=vector.tolist(),
                payload=book_payload(book, file_sha256),
            )
            for book, vector in zip(books, vectors, strict=True)
        ]
        for start in range(0, len(points), UPSERT_BATCH_SIZE):
            self.client.upsert(
                self.collection, points=points[start : start + UPSERT_BATCH_SIZE], wait=True
            )
        return len(points)

    def remove_books(self, source_files: Sequence[str], keep_ids: Sequence[str] = ()) -> None:
        """Delete the files' points except `keep_ids`, in one request however many files.

        After upserting files, this removes the books no longer in them; with no `keep_ids`,
        every book of the files (deleted files).
        """
        if not source_files or not self.client.collection_exists(self.collection):
            return
        self.client.delete(
            self.collection,
            points_selector=models.Filter(
                must=[
                    models.FieldCondition(
                        key="source_file", match=models.MatchAny(any=list(source_files))
                    )
                ],
                must_not=[models.HasIdCondition(has_id=list(keep_ids))] if keep_ids else None,
            ),
            wait=True,
        )

    def count(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return self.client.count(self.collection, exact=True).count

    def size_warning(self, count: int | None = None) -> str | None:
        """Advice to move to a server once the embedded store holds more than it is made for."""
        if self.is_server:
            return None
        if count is None:
            count = self.count()
        if count <= EMBEDDED_STORE_POINT_LIMIT:
            return None
        return (
            f"the embedded Qdrant store holds {count:,} points, more than the "
            f"{EMBEDDED_STORE_POINT_LIMIT:,} it suits: every open reads the whole collection "
            "into memory and every filter scans all points. Move to a Qdrant server: "
            "`book-pipeline migrate-store --to-url URL`, then set QDRANT_URL (docs/qdrant.md)"
        )


def _open_local_client(
    path: Path, lock_wait_seconds: float, on_wait: Callable[[str], None] | None
) -> QdrantClient:
    """Open the embedded store, waiting a bounded time while another process holds its lock."""
    path.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_wait_seconds
    announced = False
    while True:
        try:
            return QdrantClient(path=str(path))
        except RuntimeError as error:
            if "already accessed by another instance" not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"the embedded Qdrant store {path} is still in use by another process after "
                    f"{lock_wait_seconds:.0f} s (a running load?). Try again when it has "
                    "finished, or use a Qdrant server (QDRANT_URL) for concurrent access."
                ) from None
            if on_wait is not None and not announced:
                on_wait(
                    f"the embedded Qdrant store {path} is in use by another process; "
                    f"waiting up to {lock_wait_seconds:.0f} s"
                )
                announced = True
            time.sleep(_LOCK_POLL_SECONDS)


def _open_server_client(url: str, api_key: str | None) -> QdrantClient:
    """Connect and ask one cheap question, so an unreachable server fails here, by its URL."""
    client = QdrantClient(url=url, api_key=api_key, timeout=_SERVER_TIMEOUT_SECONDS)
    try:
        client.get_collections()
    except ResponseHandlingException as error:
        client.close()
        raise StoreUnreachableError(
            f"the Qdrant server at {url} is unreachable ({error}); check QDRANT_URL and that "
            "the server is running"
        ) from None
    return client


@contextmanager
def open_vector_store(
    collection: str,
    local_path: Path,
    url: str | None = None,
    api_key: str | None = None,
    lock_wait_seconds: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    settings: CollectionSettings | None = None,
) -> Iterator[BookVectorStore]:
    """A server when a URL is given, else the embedded store (its folder is locked until closed).

    A server connection locks nothing: loads and searches in other processes run side by side.
    """
    if url:
        client = _open_server_client(url, api_key)
    else:
        client = _open_local_client(local_path, lock_wait_seconds, on_wait)
    try:
        yield BookVectorStore(client, collection, is_server=bool(url), settings=settings)
    finally:
        client.close()

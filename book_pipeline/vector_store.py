"""The Qdrant collection of books: creating it, checking it matches the model, writing points."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


class BookVectorStore:
    def __init__(self, client: QdrantClient, collection: str, is_server: bool) -> None:
        self.client = client
        self.collection = collection
        # The embedded store ignores payload indexes (and warns); a server needs them for filters.
        self._create_payload_indexes = is_server

    def ensure_collection(self, dimension: int, model_name: str) -> None:
        """Create the collection for this model, or check that the existing one was made for it."""
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                metadata={"embedding_model": model_name, "dimension": dimension},
            )
            if self._create_payload_indexes:
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
                f"{model_name!r}: vectors of two models in one collection cannot be compared."
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

    def remove_file_books(self, source_file: str, keep_ids: Sequence[str] = ()) -> None:
        """Delete the file's points except `keep_ids`: books gone from the file leave search."""
        if not self.client.collection_exists(self.collection):
            return
        self.client.delete(
            self.collection,
            points_selector=models.Filter(
                must=[
                    models.FieldCondition(
                        key="source_file", match=models.MatchValue(value=source_file)
                    )
                ],
                must_not=[models.HasIdCondition(has_id=list(keep_ids))] if keep_ids else None,
            ),
            wait=True,
        )

    def replace_file_books(
        self,
        source_file: str,
        books: Sequence[BookRecord],
        vectors: np.ndarray,
        file_sha256: str,
    ) -> int:
        """Make the store hold exactly these books for the file.

        Upsert first, then delete the leftovers: a crash in between leaves stale books that the
        next run removes, never a file with no books.
        """
        loaded = self.upsert_books(books, vectors, file_sha256)
        self.remove_file_books(
            source_file, keep_ids=[book_point_id(source_file, book.index) for book in books]
        )
        return loaded

    def count(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return self.client.count(self.collection, exact=True).count


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
) -> Iterator[BookVectorStore]:
    """A server when a URL is given, else the embedded store (its folder is locked until closed)."""
    if url:
        client = _open_server_client(url, api_key)
    else:
        client = _open_local_client(local_path, lock_wait_seconds, on_wait)
    try:
        yield BookVectorStore(client, collection, is_server=bool(url))
    finally:
        client.close()

"""The collection of books in Qdrant, whichever engine holds it: the interface and its errors.

The embedded default is a Qdrant Edge shard in a folder (`edge`); with a URL it is a Qdrant
server through qdrant-client (`server`). The ops, the retrieval check, search, `info` and
`migrate-store` only see `BookVectorStore`. Nothing of the package is imported here: the engines
build on this module, never the other way. (Both engines compute keyword vectors with
qdrant-edge's BM25.)

Every book is stored with three vectors: its dense embedding (the unnamed default vector), its
BM25 keyword vector (`KEYWORD_VECTOR_NAME`, an IDF sparse vector of accent-folded words) and the
trigrams of its title and author (`NAME_VECTOR_NAME`, for misspelled names). A collection made by
an earlier release lacks the two sparse ones (or holds issue 18's unfolded `bm25`); it answers
dense searches until it is upgraded.
"""

from __future__ import annotations

import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from book_pipeline.core.books.parsing import BookRecord
from book_pipeline.core.store.errors import CollectionMismatchError
from book_pipeline.core.store.keyword_vectors import (
    KEYWORD_VECTOR_NAME,
    SparseVector,
    book_keyword_vector,
)
from book_pipeline.core.store.name_vectors import book_name_vector

# Fixed forever: point ids derive from it, and changing it would duplicate every book.
_BOOK_ID_NAMESPACE = uuid.UUID("6f1d2a8e-3c55-4c1e-9a51-0b9d7f4e2c10")
# Its bytes once: `uuid.uuid5` converts the namespace again for every id, a tenth of a load's
# store-side time.
_BOOK_ID_NAMESPACE_BYTES = _BOOK_ID_NAMESPACE.bytes
UPSERT_BATCH_SIZE = 256
# Which pipeline loaded a point (its id, `core/ingest/ownership.py`): several pipelines may share
# one server collection, and each removes only its own books. Points loaded before pipelines were
# told apart have none ("unclaimed") until their pipeline's next load claims them.
PIPELINE_FIELD = "pipeline"
# `owner` of `stored_counts` and `remove_books`: a pipeline's id, None for every point, or
# UNCLAIMED for the points without a pipeline.
UNCLAIMED = ""
# What the pipeline filters by: the source file (loads and deletes), author and year (search),
# the pipeline (each removes its own).
KEYWORD_FIELDS = ("author", "source_file", PIPELINE_FIELD)
INTEGER_FIELDS = ("year",)
EDGE_ENGINE = "qdrant-edge"
DENSE_MODE = "dense"
KEYWORD_MODE = "keyword"
HYBRID_MODE = "hybrid"
# The default first: what a search answers when no mode is asked for.
SEARCH_MODES = (HYBRID_MODE, DENSE_MODE, KEYWORD_MODE)
SERVER_ENGINE = "qdrant-server"


def book_point_id(source_file: str, index: int) -> str:
    """A book is its file and its index there: a re-run overwrites its point, never adds one."""
    # uuid.uuid5's own steps: SHA-1 of namespace and name, first 16 bytes, version 5.
    digest = hashlib.sha1(
        _BOOK_ID_NAMESPACE_BYTES + f"{source_file}\x1f{index}".encode(), usedforsecurity=False
    ).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def book_payload(
    book: BookRecord, file_sha256: str, pipeline_id: str | None = None
) -> dict[str, Any]:
    owner = {PIPELINE_FIELD: pipeline_id} if pipeline_id else {}
    return {
        **owner,
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
class StoredPoint:
    """A point as either engine gives it back; the vectors only when asked for."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None
    keyword_vector: SparseVector | None = None
    name_vector: SparseVector | None = None


@dataclass(frozen=True)
class ScoredPoint:
    id: str
    # Dense: cosine similarity (1 the same direction, around 0 unrelated). Keyword: the BM25
    # score. Hybrid: the fused score, which only orders the hits.
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class CollectionStamp:
    """Which collection this is and how far its loads got, read without reading a point.

    `generation` is made when the collection is created, so a deleted, replaced or new
    collection never passes for the one the ledger describes; None for one made by the release
    before generations (it gets one at its next load). `load_sequence` is the number of the last
    load whose points the collection holds: a backup restored from before later loads has a
    smaller number than the ledger records for them.
    """

    generation: str | None
    load_sequence: int


@dataclass(frozen=True)
class HybridFusion:
    """How a hybrid search fuses its dense and keyword candidates, for both engines.

    Each side fetches max(limit, `candidates`) points through the filter. "dbsf" (distribution-
    based score fusion) rescales each side's scores by their mean and spread, then adds them;
    "rrf" scores a point sum(weight / (rrf_k + rank)) over the sides that found it.

    DBSF, the default, was chosen on SciFact's train split (docs/search.md): NDCG@10 0.737
    against 0.725 for the best RRF (k=2) and 0.660 dense, 0.699 BM25 alone; it has no parameter
    to tune, and 50 to 200 candidates score within 0.004 of each other.
    """

    method: Literal["rrf", "dbsf"] = "dbsf"
    rrf_k: int = 2
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    candidates: int = 100


HYBRID_FUSION = HybridFusion()


def point_keyword_vector(point: StoredPoint) -> SparseVector:
    """The point's BM25 vector, made from its payload when it came without one (a copy from a
    collection of the previous release)."""
    if point.keyword_vector is not None:
        return point.keyword_vector
    return book_keyword_vector(book_from_payload(point.payload))


def point_name_vector(point: StoredPoint) -> SparseVector:
    """The point's title-and-author trigrams, made from its payload when it came without them."""
    if point.name_vector is not None:
        return point.name_vector
    return book_name_vector(book_from_payload(point.payload))


def book_points(
    books: Sequence[BookRecord],
    vectors: np.ndarray,
    file_sha256: str,
    pipeline_id: str | None = None,
) -> list[StoredPoint]:
    """The points a load stores for a file's books: ids, payloads (with the pipeline that loads
    them), dense and keyword vectors."""
    return [
        StoredPoint(
            id=book_point_id(book.source_file, book.index),
            payload=book_payload(book, file_sha256, pipeline_id),
            vector=vector,
            keyword_vector=book_keyword_vector(book),
            name_vector=book_name_vector(book),
        )
        # One tolist for the whole batch rather than one per row: the cheaper of the two.
        for book, vector in zip(books, vectors.tolist(), strict=True)
    ]


@dataclass(frozen=True)
class BookFilter:
    """Exact author, inclusive year range; both engines answer it from payload indexes."""

    author: str | None = None
    year_from: int | None = None
    year_to: int | None = None


class BookVectorStore(ABC):
    """One collection of book points in one engine, open until `close`."""

    engine: str
    collection: str
    # Where it lives: the shard's folder, or the server's URL (never its API key).
    location: str

    def ensure_collection(self, dimension: int, model_name: str) -> None:
        """Create the collection for this model, or check that the existing one was made for it.

        The store's settings shape a new collection only: an existing one keeps its layout.
        """
        if not self.collection_exists():
            self._create_collection(dimension, model_name)
            return
        existing_dimension, existing_model = self.collection_model()
        if existing_dimension != dimension:
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} at {self.location} holds "
                f"{existing_dimension}-dimensional vectors ({existing_model or 'unknown model'}), "
                f"but the embedder {model_name!r} makes {dimension}-dimensional ones. Use another "
                "collection (BOOK_PIPELINE_COLLECTION) or the collection's model."
            )
        if existing_model is not None and existing_model != model_name:
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} at {self.location} was built with "
                f"{existing_model!r}, not {model_name!r}: vectors of two models in one "
                "collection cannot be compared. Use another collection (BOOK_PIPELINE_COLLECTION) "
                "or the collection's model."
            )

    def upsert_books(
        self,
        books: Sequence[BookRecord],
        vectors: np.ndarray,
        file_sha256: str,
        pipeline_id: str | None = None,
    ) -> int:
        points = book_points(books, vectors, file_sha256, pipeline_id)
        for start in range(0, len(points), UPSERT_BATCH_SIZE):
            self.upsert_points(points[start : start + UPSERT_BATCH_SIZE])
        return len(points)

    @abstractmethod
    def collection_exists(self) -> bool: ...

    @abstractmethod
    def _create_collection(self, dimension: int, model_name: str) -> None:
        """A new cosine collection with the payload indexes, recording model and dimension."""

    @abstractmethod
    def collection_model(self) -> tuple[int, str | None]:
        """The vector size and the embedding model recorded when the collection was created."""

    @abstractmethod
    def stamp(self) -> CollectionStamp | None:
        """The collection's generation and load sequence; None when it does not exist."""

    @abstractmethod
    def record_load(self, load_sequence: int, generation: str | None = None) -> str:
        """Record that the collection durably holds the points of load `load_sequence`; returns
        its generation: `generation` when given (a copy takes its source's), else its own, or a
        new one if it has none."""

    @abstractmethod
    def stored_counts(self, owner: str | None = None) -> dict[str, int]:
        """The number of points of each source file, counted exactly by the store (a facet on
        the indexed `source_file`); empty when the collection does not exist. `owner`: only the
        points of that pipeline (UNCLAIMED: of none)."""

    @abstractmethod
    def claim_books(self, source_files: Sequence[str], pipeline_id: str) -> None:
        """Give the unclaimed points of these files to the pipeline (its id in their payload,
        indexed): what a pipeline loaded before pipelines were told apart becomes its own."""

    @abstractmethod
    def has_keyword_vectors(self) -> bool:
        """Whether the collection stores both sparse vectors, the accent-folded BM25 and the
        title-and-author trigrams (False for the earlier releases')."""

    def search_modes(self) -> tuple[str, ...]:
        """The search modes the collection can answer, the default first (dense alone for a
        collection without keyword vectors, or a missing one, where a search is refused as
        nothing loaded)."""
        if self.collection_exists() and self.has_keyword_vectors():
            return SEARCH_MODES
        return (DENSE_MODE,)

    @abstractmethod
    def upsert_points(self, points: Sequence[StoredPoint]) -> None:
        """Write points with their vectors, replacing those with the same ids; durable on return.

        A collection without keyword vectors is written its points' dense vectors only.
        """

    @abstractmethod
    def remove_books(
        self, source_files: Sequence[str], keep_ids: Sequence[str] = (), owner: str | None = None
    ) -> None:
        """Delete the files' points except `keep_ids`, in one request however many files; with
        `owner`, only that pipeline's points (UNCLAIMED: those of none).

        After upserting files, this removes the books no longer in them; with no `keep_ids`,
        every book of the files (deleted files).
        """

    @abstractmethod
    def count(self) -> int:
        """The exact number of points; 0 when the collection does not exist."""

    @abstractmethod
    def search(
        self, vector: Sequence[float], limit: int, book_filter: BookFilter | None = None
    ) -> list[ScoredPoint]:
        """The `limit` points nearest to `vector`, best first, with their payloads."""

    @abstractmethod
    def keyword_search(
        self,
        vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        using: str = KEYWORD_VECTOR_NAME,
    ) -> list[ScoredPoint]:
        """The `limit` points with the best score for a query's sparse vector: BM25 by default,
        or the title-and-author trigrams (`NAME_VECTOR_NAME`)."""

    @abstractmethod
    def hybrid_search(
        self,
        vector: Sequence[float],
        keyword_vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        fusion: HybridFusion = HYBRID_FUSION,
    ) -> list[ScoredPoint]:
        """Dense and keyword candidates (each filtered) fused by `fusion`, best first."""

    @abstractmethod
    def recommend(
        self,
        positives: Sequence[Sequence[float]],
        negatives: Sequence[Sequence[float]],
        limit: int,
        book_filter: BookFilter | None = None,
        except_ids: Sequence[str] = (),
    ) -> list[ScoredPoint]:
        """The points most like all `positives` and least like the `negatives` (dense vectors,
        summed similarities), except the points `except_ids`."""

    @abstractmethod
    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        """The points among `ids` that exist, with payloads."""

    @abstractmethod
    def books_titled(self, title: str, limit: int) -> list[StoredPoint]:
        """Up to `limit` points whose title is exactly `title`, with their vectors."""

    @abstractmethod
    def scroll(
        self, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[StoredPoint], str | None]:
        """A page of points in id order and the offset of the next page (None after the last)."""

    @abstractmethod
    def indexing_status(self) -> tuple[int, int]:
        """(points, points already in an HNSW index): the rest are searched by full scan."""

    def build_index(self) -> bool:
        """Build the HNSW index of whatever waits for one now; False when nothing did.

        A server indexes in the background by itself; the Edge engine only when asked.
        """
        return False

    @abstractmethod
    def close(self) -> None: ...


def new_generation() -> str:
    return uuid.uuid4().hex

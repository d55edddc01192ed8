"""The store's terms in qdrant-client's and back: a collection's vector configuration, a
`BookFilter` as a Qdrant filter, fusions, records as points, the stamp in the collection's
metadata, and qdrant-client's errors as the store's own (each naming the server).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import (
    PIPELINE_FIELD,
    UNCLAIMED,
    BookFilter,
    CollectionStamp,
    HybridFusion,
    ScoredPoint,
    StoredPoint,
)
from book_pipeline.core.store.errors import (
    StoreRefusedError,
    StoreUnreachableError,
)
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME, SparseVector
from book_pipeline.core.store.name_vectors import NAME_VECTOR_NAME

# The dense vector is the unnamed default: the previous release's collections have only that one.
DENSE_VECTOR_NAME = ""


def vector_params(settings: CollectionSettings, dimension: int) -> models.VectorParams:
    """The vectors of a new collection: cosine, plus what the settings ask for (else the server's
    defaults)."""
    hnsw = None
    if settings.hnsw_m is not None or settings.hnsw_ef_construct is not None:
        hnsw = models.HnswConfigDiff(m=settings.hnsw_m, ef_construct=settings.hnsw_ef_construct)
    quantization = None
    if settings.int8_quantization:
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
        on_disk=settings.on_disk_vectors or None,
        hnsw_config=hnsw,
        quantization_config=quantization,
    )


def sparse_vectors_config() -> dict[str, models.SparseVectorParams]:
    """The BM25 keyword vector, whose tokens' IDF the server applies at query time, and the
    title-and-author trigrams, without IDF (their score is the share of the query found)."""
    return {
        KEYWORD_VECTOR_NAME: models.SparseVectorParams(modifier=models.Modifier.IDF),
        NAME_VECTOR_NAME: models.SparseVectorParams(),
    }


def qdrant_filter(
    book_filter: BookFilter | None, except_ids: Sequence[str] = ()
) -> models.Filter | None:
    conditions: list[models.Condition] = []
    must_not: list[models.Condition] = (
        [models.HasIdCondition(has_id=list(except_ids))] if except_ids else []
    )
    if book_filter is None:
        return models.Filter(must_not=must_not) if must_not else None
    if book_filter.author is not None:
        conditions.append(
            models.FieldCondition(key="author", match=models.MatchValue(value=book_filter.author))
        )
    if book_filter.year_from is not None or book_filter.year_to is not None:
        conditions.append(
            models.FieldCondition(
                key="year", range=models.Range(gte=book_filter.year_from, lte=book_filter.year_to)
            )
        )
    if not conditions and not must_not:
        return None
    return models.Filter(must=conditions or None, must_not=must_not or None)


class TranslatedClient:
    """qdrant-client whose errors become the store's own, each naming the server: callers (the
    ops, the CLI, migrate-store) handle `StoreUnreachableError` and `StoreRefusedError` and never
    import qdrant-client."""

    def __init__(self, client: QdrantClient, location: str) -> None:
        self._client = client
        self._location = location

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        return _translating_errors(attribute, self._location)


def _translating_errors(call: Callable[..., Any], location: str) -> Callable[..., Any]:
    @wraps(call)
    def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except UnexpectedResponse as error:
            # Its text is the server's answer (status and body); the request and its key are not.
            raise StoreRefusedError(f"the Qdrant server at {location} refused: {error}") from None
        except ResponseHandlingException as error:
            raise StoreUnreachableError(
                f"lost the Qdrant server at {location} ({error}); try again, it is safe to repeat"
            ) from None

    return translated


def owner_conditions(owner: str | None) -> list[models.Condition]:
    if owner is None:
        return []
    if owner == UNCLAIMED:
        return [models.IsEmptyCondition(is_empty=models.PayloadField(key=PIPELINE_FIELD))]
    return [models.FieldCondition(key=PIPELINE_FIELD, match=models.MatchValue(value=owner))]


def files_filter(
    source_files: Sequence[str], keep_ids: Sequence[str] = (), owner: str | None = None
) -> models.Filter:
    """The points of these files (of this owner), except `keep_ids`."""
    return models.Filter(
        must=[
            models.FieldCondition(key="source_file", match=models.MatchAny(any=list(source_files))),
            *owner_conditions(owner),
        ],
        must_not=[models.HasIdCondition(has_id=list(keep_ids))] if keep_ids else None,
    )


def metadata_stamp(metadata: dict) -> CollectionStamp:
    return CollectionStamp(metadata.get("generation"), int(metadata.get("load_sequence") or 0))


def scored_points(response: models.QueryResponse) -> list[ScoredPoint]:
    return [
        ScoredPoint(str(point.id), point.score, point.payload or {}) for point in response.points
    ]


def sparse_vector(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices, values=vector.values)


def fusion_query(fusion: HybridFusion) -> models.Query:
    if fusion.method == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    return models.RrfQuery(
        rrf=models.Rrf(k=fusion.rrf_k, weights=[fusion.dense_weight, fusion.keyword_weight])
    )


def stored_point(record: models.Record) -> StoredPoint:
    vector: Any = record.vector
    sparse: dict[str, SparseVector] = {}
    if isinstance(vector, dict):
        for name in (KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME):
            stored = vector.get(name)
            if isinstance(stored, models.SparseVector):
                sparse[name] = SparseVector(list(stored.indices), list(stored.values))
        vector = vector.get(DENSE_VECTOR_NAME)
    return StoredPoint(
        id=str(record.id),
        payload=record.payload or {},
        vector=list(vector) if isinstance(vector, list) else None,
        keyword_vector=sparse.get(KEYWORD_VECTOR_NAME),
        name_vector=sparse.get(NAME_VECTOR_NAME),
    )

"""The store's terms in Qdrant Edge's and back: a shard's configuration from the collection
settings, a `BookFilter` as an Edge filter, queries, fusions, and Edge's records as points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import qdrant_edge as edge

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import (
    PIPELINE_FIELD,
    UNCLAIMED,
    BookFilter,
    HybridFusion,
    ScoredPoint,
    StoredPoint,
)
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME, SparseVector
from book_pipeline.core.store.name_vectors import NAME_VECTOR_NAME

# Edge's own defaults, spelled out because HnswIndexConfig takes all three or none.
_DEFAULT_HNSW_M = 16

_DEFAULT_HNSW_EF_CONSTRUCT = 100

_DEFAULT_FULL_SCAN_THRESHOLD_KB = 10_000

# The dense vector is the unnamed default: the previous release's shards have only that one.
DENSE_VECTOR_NAME = ""


def edge_config(settings: CollectionSettings, dimension: int) -> edge.EdgeConfig:
    """The shard's layout: cosine vectors, plus the settings that mean something in-process."""
    hnsw = None
    if settings.hnsw_m is not None or settings.hnsw_ef_construct is not None:
        hnsw = edge.HnswIndexConfig(
            m=settings.hnsw_m or _DEFAULT_HNSW_M,
            ef_construct=settings.hnsw_ef_construct or _DEFAULT_HNSW_EF_CONSTRUCT,
            full_scan_threshold=_DEFAULT_FULL_SCAN_THRESHOLD_KB,
        )
    quantization = None
    if settings.int8_quantization:
        quantization = edge.ScalarQuantizationConfig(
            type=edge.ScalarType.Int8, quantile=0.99, always_ram=True
        )
    return edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(
            size=dimension,
            distance=edge.Distance.Cosine,
            on_disk=settings.on_disk_vectors or None,
        ),
        sparse_vectors={
            KEYWORD_VECTOR_NAME: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf),
            # No IDF: the score stays the share of the query's trigrams (`name_vectors`).
            NAME_VECTOR_NAME: edge.EdgeSparseVectorParams(),
        },
        on_disk_payload=settings.on_disk_payload,
        hnsw_config=hnsw,
        quantization_config=quantization,
    )


def edge_filter(
    book_filter: BookFilter | None = None,
    source_files: Sequence[str] = (),
    except_ids: Sequence[str] = (),
    owner: str | None = None,
) -> edge.Filter | None:
    conditions: list[Any] = _owner_conditions(owner)
    if book_filter is not None and book_filter.author is not None:
        conditions.append(
            edge.FieldCondition(key="author", match=edge.MatchValue(book_filter.author))
        )
    if book_filter is not None and (
        book_filter.year_from is not None or book_filter.year_to is not None
    ):
        conditions.append(
            edge.FieldCondition(
                key="year",
                range=edge.RangeFloat(gte=book_filter.year_from, lte=book_filter.year_to),
            )
        )
    if source_files:
        conditions.append(
            edge.FieldCondition(key="source_file", match=edge.MatchAny(list(source_files)))
        )
    must_not = [edge.HasIdCondition(set(except_ids))] if except_ids else None
    if not conditions and not must_not:
        return None
    return edge.Filter(must=conditions or None, must_not=must_not)


def _owner_conditions(owner: str | None) -> list[Any]:
    if owner is None:
        return []
    if owner == UNCLAIMED:
        return [edge.IsEmptyCondition(PIPELINE_FIELD)]
    return [edge.FieldCondition(key=PIPELINE_FIELD, match=edge.MatchValue(owner))]


def scored_points(points: list[Any]) -> list[ScoredPoint]:
    return [ScoredPoint(str(point.id), point.score, point.payload or {}) for point in points]


def keyword_query(vector: SparseVector, using: str = KEYWORD_VECTOR_NAME) -> edge.Query:
    return edge.Query.Nearest(edge.SparseVector(vector.indices, vector.values), using=using)


def edge_fusion(fusion: HybridFusion) -> Any:
    if fusion.method == "dbsf":
        return edge.Fusion.Dbsf()
    return edge.Fusion.Rrf(k=fusion.rrf_k, weights=[fusion.dense_weight, fusion.keyword_weight])


def stored_point(record: Any) -> StoredPoint:
    vector = record.vector
    sparse: dict[str, SparseVector] = {}
    if isinstance(vector, dict):
        for name in (KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME):
            stored = vector.get(name)
            if stored is not None:
                sparse[name] = SparseVector(list(stored.indices), list(stored.values))
        vector = vector.get(DENSE_VECTOR_NAME)
    return StoredPoint(
        id=str(record.id),
        payload=record.payload or {},
        vector=list(vector) if isinstance(vector, list) else None,
        keyword_vector=sparse.get(KEYWORD_VECTOR_NAME),
        name_vector=sparse.get(NAME_VECTOR_NAME),
    )


def nearest(vector: Sequence[float]) -> edge.Query:
    return edge.Query.Nearest(list(vector))


def recommend_query(
    positives: Sequence[Sequence[float]], negatives: Sequence[Sequence[float]]
) -> edge.Query:
    query = edge.RecommendQuery(
        [list(vector) for vector in positives], [list(vector) for vector in negatives]
    )
    return edge.Query.RecommendSumScores(query)


def query_request(limit: int, query: edge.Query, points_filter: Any) -> edge.QueryRequest:
    return edge.QueryRequest(limit=limit, query=query, filter=points_filter, with_payload=True)


def hybrid_request(
    vector: Sequence[float],
    keyword_vector: SparseVector,
    limit: int,
    points_filter: Any,
    fusion: HybridFusion,
) -> edge.QueryRequest:
    """Dense and keyword candidates (each side filtered), fused by `fusion`."""
    candidates = max(limit, fusion.candidates)
    return edge.QueryRequest(
        limit=limit,
        prefetches=[
            edge.Prefetch(limit=candidates, query=nearest(vector), filter=points_filter),
            edge.Prefetch(
                limit=candidates, query=keyword_query(keyword_vector), filter=points_filter
            ),
        ],
        query=edge_fusion(fusion),
        with_payload=True,
    )

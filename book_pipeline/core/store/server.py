"""A Qdrant server (`QDRANT_URL`) through qdrant-client, behind the `BookVectorStore` interface.

The same class reads the previous version's embedded store (qdrant-client's local mode, which
has the server's API) when it is copied into an Edge shard: see `open_local_mode_store`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import (
    HYBRID_FUSION,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PIPELINE_FIELD,
    SERVER_ENGINE,
    UNCLAIMED,
    BookFilter,
    BookVectorStore,
    CollectionMismatchError,
    CollectionStamp,
    HybridFusion,
    ScoredPoint,
    StoredPoint,
    StoreLockedError,
    StoreRefusedError,
    StoreUnreachableError,
    new_generation,
    point_keyword_vector,
)
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME, SparseVector
from book_pipeline.core.store.server_version import ServerTooOldError, check_server_version

_SERVER_TIMEOUT_SECONDS = 30
# Larger than any books folder: a facet returns at most this many source files.
_FACET_LIMIT = 10_000_000
LOCAL_MODE_ENGINE = "qdrant-client-local"
# The dense vector is the unnamed default: the previous release's collections have only that one.
_DENSE_VECTOR_NAME = ""


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
    """The BM25 keyword vector; the server applies the IDF of each token at query time."""
    return {KEYWORD_VECTOR_NAME: models.SparseVectorParams(modifier=models.Modifier.IDF)}


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


class _TranslatedClient:
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


class QdrantClientStore(BookVectorStore):
    engine = SERVER_ENGINE

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        location: str,
        settings: CollectionSettings | None = None,
        engine: str = SERVER_ENGINE,
    ) -> None:
        self.client = _TranslatedClient(client, location)
        self.collection = collection
        self.location = location
        self.settings = settings or CollectionSettings()
        self.engine = engine
        self._keyword_vectors: bool | None = None

    def collection_exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def _create_collection(self, dimension: int, model_name: str) -> None:
        settings = self.settings
        self.client.create_collection(
            self.collection,
            vectors_config=vector_params(settings, dimension),
            sparse_vectors_config=sparse_vectors_config(),
            shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor,
            on_disk_payload=settings.on_disk_payload,
            metadata={
                "embedding_model": model_name,
                "dimension": dimension,
                "generation": new_generation(),
                "load_sequence": 0,
            },
        )
        self._keyword_vectors = None
        schemas = {
            **dict.fromkeys(KEYWORD_FIELDS, models.PayloadSchemaType.KEYWORD),
            **dict.fromkeys(INTEGER_FIELDS, models.PayloadSchemaType.INTEGER),
        }
        for field, schema in schemas.items():
            self.client.create_payload_index(self.collection, field, field_schema=schema)

    def collection_model(self) -> tuple[int, str | None]:
        info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams) or (
            vectors.distance != models.Distance.COSINE
        ):
            raise CollectionMismatchError(
                f"Qdrant collection {self.collection!r} at {self.location} was not made by "
                "book_pipeline (named vectors, or a distance other than cosine)"
            )
        metadata = info.config.metadata or {}
        return vectors.size, metadata.get("embedding_model")

    def stamp(self) -> CollectionStamp | None:
        if not self.collection_exists():
            return None
        return metadata_stamp(self._metadata())

    def record_load(self, load_sequence: int, generation: str | None = None) -> str:
        # Upserts were sent with wait=True: the points are applied before the metadata says so.
        metadata = self._metadata()
        generation = generation or metadata.get("generation") or new_generation()
        self.client.update_collection(
            self.collection,
            metadata={**metadata, "generation": generation, "load_sequence": load_sequence},
        )
        return generation

    def stored_counts(self, owner: str | None = None) -> dict[str, int]:
        if not self.collection_exists():
            return {}
        owned = _owner_conditions(owner)
        response = self.client.facet(
            self.collection,
            key="source_file",
            facet_filter=models.Filter(must=owned) if owned else None,
            limit=_FACET_LIMIT,
            exact=True,
        )
        return {str(hit.value): hit.count for hit in response.hits}

    def claim_books(self, source_files: Sequence[str], pipeline_id: str) -> None:
        self.client.create_payload_index(
            self.collection, PIPELINE_FIELD, field_schema=models.PayloadSchemaType.KEYWORD
        )
        if source_files:
            self.client.set_payload(
                self.collection,
                payload={PIPELINE_FIELD: pipeline_id},
                points=_files_filter(source_files, owner=UNCLAIMED),
                wait=True,
            )

    def _metadata(self) -> dict:
        return dict(self.client.get_collection(self.collection).config.metadata or {})

    def has_keyword_vectors(self) -> bool:
        if self._keyword_vectors is None:
            sparse = self.client.get_collection(self.collection).config.params.sparse_vectors
            self._keyword_vectors = KEYWORD_VECTOR_NAME in (sparse or {})
        return self._keyword_vectors

    def upsert_points(self, points: Sequence[StoredPoint]) -> None:
        self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=point.id, vector=self._point_vectors(point), payload=point.payload
                )
                for point in points
            ],
            wait=True,
        )

    def _point_vectors(self, point: StoredPoint) -> Any:
        assert point.vector is not None, f"point {point.id} has no vector"
        if not self.has_keyword_vectors():
            return point.vector
        keyword = point_keyword_vector(point)
        return {
            _DENSE_VECTOR_NAME: point.vector,
            KEYWORD_VECTOR_NAME: models.SparseVector(
                indices=keyword.indices, values=keyword.values
            ),
        }

    def remove_books(
        self, source_files: Sequence[str], keep_ids: Sequence[str] = (), owner: str | None = None
    ) -> None:
        if not source_files or not self.collection_exists():
            return
        self.client.delete(
            self.collection,
            points_selector=_files_filter(source_files, keep_ids, owner),
            wait=True,
        )

    def count(self) -> int:
        if not self.collection_exists():
            return 0
        return self.client.count(self.collection, exact=True).count

    def search(
        self, vector: Sequence[float], limit: int, book_filter: BookFilter | None = None
    ) -> list[ScoredPoint]:
        response = self.client.query_points(
            self.collection,
            query=list(vector),
            query_filter=qdrant_filter(book_filter),
            limit=limit,
            with_payload=True,
        )
        return _scored(response)

    def keyword_search(
        self, vector: SparseVector, limit: int, book_filter: BookFilter | None = None
    ) -> list[ScoredPoint]:
        response = self.client.query_points(
            self.collection,
            query=_sparse(vector),
            using=KEYWORD_VECTOR_NAME,
            query_filter=qdrant_filter(book_filter),
            limit=limit,
            with_payload=True,
        )
        return _scored(response)

    def hybrid_search(
        self,
        vector: Sequence[float],
        keyword_vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        fusion: HybridFusion = HYBRID_FUSION,
    ) -> list[ScoredPoint]:
        points_filter = qdrant_filter(book_filter)
        candidates = max(limit, fusion.candidates)
        response = self.client.query_points(
            self.collection,
            prefetch=[
                models.Prefetch(query=list(vector), filter=points_filter, limit=candidates),
                models.Prefetch(
                    query=_sparse(keyword_vector),
                    using=KEYWORD_VECTOR_NAME,
                    filter=points_filter,
                    limit=candidates,
                ),
            ],
            query=_fusion_query(fusion),
            limit=limit,
            with_payload=True,
        )
        return _scored(response)

    def recommend(
        self,
        positives: Sequence[Sequence[float]],
        negatives: Sequence[Sequence[float]],
        limit: int,
        book_filter: BookFilter | None = None,
        except_ids: Sequence[str] = (),
    ) -> list[ScoredPoint]:
        response = self.client.query_points(
            self.collection,
            query=models.RecommendQuery(
                recommend=models.RecommendInput(
                    positive=[list(vector) for vector in positives],
                    negative=[list(vector) for vector in negatives],
                    strategy=models.RecommendStrategy.SUM_SCORES,
                )
            ),
            query_filter=qdrant_filter(book_filter, except_ids),
            limit=limit,
            with_payload=True,
        )
        return _scored(response)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self.client.retrieve(
            self.collection, ids=list(ids), with_payload=True, with_vectors=with_vectors
        )
        return [_stored(record) for record in records]

    def books_titled(self, title: str, limit: int) -> list[StoredPoint]:
        records, _ = self.client.scroll(
            self.collection,
            scroll_filter=models.Filter(
                must=[models.FieldCondition(key="title", match=models.MatchValue(value=title))]
            ),
            limit=limit,
            with_payload=True,
            with_vectors=True,
        )
        return [_stored(record) for record in records]

    def scroll(
        self, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[StoredPoint], str | None]:
        records, next_offset = self.client.scroll(
            self.collection,
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [_stored(record) for record in records], (
            None if next_offset is None else str(next_offset)
        )

    def indexing_status(self) -> tuple[int, int]:
        info = self.client.get_collection(self.collection)
        return info.points_count or 0, info.indexed_vectors_count or 0

    def close(self) -> None:
        self.client.close()


def _owner_conditions(owner: str | None) -> list[models.Condition]:
    if owner is None:
        return []
    if owner == UNCLAIMED:
        return [models.IsEmptyCondition(is_empty=models.PayloadField(key=PIPELINE_FIELD))]
    return [models.FieldCondition(key=PIPELINE_FIELD, match=models.MatchValue(value=owner))]


def _files_filter(
    source_files: Sequence[str], keep_ids: Sequence[str] = (), owner: str | None = None
) -> models.Filter:
    """The points of these files (of this owner), except `keep_ids`."""
    return models.Filter(
        must=[
            models.FieldCondition(key="source_file", match=models.MatchAny(any=list(source_files))),
            *_owner_conditions(owner),
        ],
        must_not=[models.HasIdCondition(has_id=list(keep_ids))] if keep_ids else None,
    )


def metadata_stamp(metadata: dict) -> CollectionStamp:
    return CollectionStamp(metadata.get("generation"), int(metadata.get("load_sequence") or 0))


def _scored(response: models.QueryResponse) -> list[ScoredPoint]:
    return [
        ScoredPoint(str(point.id), point.score, point.payload or {}) for point in response.points
    ]


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices, values=vector.values)


def _fusion_query(fusion: HybridFusion) -> models.Query:
    if fusion.method == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    return models.RrfQuery(
        rrf=models.Rrf(k=fusion.rrf_k, weights=[fusion.dense_weight, fusion.keyword_weight])
    )


def _stored(record: models.Record) -> StoredPoint:
    vector: Any = record.vector
    keyword_vector = None
    if isinstance(vector, dict):
        sparse = vector.get(KEYWORD_VECTOR_NAME)
        if isinstance(sparse, models.SparseVector):
            keyword_vector = SparseVector(list(sparse.indices), list(sparse.values))
        vector = vector.get(_DENSE_VECTOR_NAME)
    return StoredPoint(
        id=str(record.id),
        payload=record.payload or {},
        vector=list(vector) if isinstance(vector, list) else None,
        keyword_vector=keyword_vector,
    )


def open_server_store(
    collection: str, url: str, api_key: str | None, settings: CollectionSettings | None
) -> QdrantClientStore:
    """Connect and ask two cheap questions, so an unreachable server fails here, by its URL,
    and so does one too old to keep the collection's stamp (`server_version`)."""
    # No background version check: it races the first request from a thread of its own, so a
    # refused key is sent twice and reported as "Failed to obtain server version".
    client = QdrantClient(
        url=url, api_key=api_key, timeout=_SERVER_TIMEOUT_SECONDS, check_compatibility=False
    )
    try:
        client.get_collections()
        check_server_version(client.info().version, url)
    except ServerTooOldError:
        client.close()
        raise
    except ResponseHandlingException as error:
        client.close()
        raise StoreUnreachableError(
            f"the Qdrant server at {url} is unreachable ({error}); check QDRANT_URL and that "
            "the server is running"
        ) from None
    except UnexpectedResponse as error:
        client.close()
        raise StoreRefusedError(f"the Qdrant server at {url} refused: {error}") from None
    return QdrantClientStore(client, collection, url, settings)


def open_local_mode_store(path: Path, collection: str) -> QdrantClientStore:
    """The previous version's embedded store, opened to be copied (it is never written to)."""
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as error:
        if "already accessed by another instance" not in str(error):
            raise
        raise StoreLockedError(
            f"the previous version's Qdrant store {path} is in use by another process (a "
            "pipeline of the previous version still running?); stop it and try again"
        ) from None
    return QdrantClientStore(client, collection, str(path), engine=LOCAL_MODE_ENGINE)

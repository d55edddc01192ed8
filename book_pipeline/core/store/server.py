"""A Qdrant server (`QDRANT_URL`) through qdrant-client, behind the `BookVectorStore` interface.

The same class reads the previous version's embedded store (qdrant-client's local mode, which
has the server's API) when it is copied into an Edge shard. Connecting: `server_opening.py`;
the translation of filters, points and errors: `server_conversions.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient, models

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
    CollectionStamp,
    HybridFusion,
    ScoredPoint,
    StoredPoint,
    new_generation,
    point_keyword_vector,
    point_name_vector,
)
from book_pipeline.core.store.errors import CollectionMismatchError
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME, SparseVector
from book_pipeline.core.store.name_vectors import NAME_VECTOR_NAME
from book_pipeline.core.store.server_conversions import (
    DENSE_VECTOR_NAME,
    TranslatedClient,
    files_filter,
    fusion_query,
    metadata_stamp,
    owner_conditions,
    qdrant_filter,
    scored_points,
    sparse_vector,
    sparse_vectors_config,
    stored_point,
    vector_params,
)

# Larger than any books folder: a facet returns at most this many source files.
_FACET_LIMIT = 10_000_000
LOCAL_MODE_ENGINE = "qdrant-client-local"


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
        self.client = TranslatedClient(client, location)
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
        owned = owner_conditions(owner)
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
                points=files_filter(source_files, owner=UNCLAIMED),
                wait=True,
            )

    def _metadata(self) -> dict:
        return dict(self.client.get_collection(self.collection).config.metadata or {})

    def has_keyword_vectors(self) -> bool:
        if self._keyword_vectors is None:
            sparse = self.client.get_collection(self.collection).config.params.sparse_vectors
            self._keyword_vectors = all(
                name in (sparse or {}) for name in (KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME)
            )
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
        return {
            DENSE_VECTOR_NAME: point.vector,
            KEYWORD_VECTOR_NAME: sparse_vector(point_keyword_vector(point)),
            NAME_VECTOR_NAME: sparse_vector(point_name_vector(point)),
        }

    def remove_books(
        self, source_files: Sequence[str], keep_ids: Sequence[str] = (), owner: str | None = None
    ) -> None:
        if not source_files or not self.collection_exists():
            return
        self.client.delete(
            self.collection,
            points_selector=files_filter(source_files, keep_ids, owner),
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
        return scored_points(response)

    def keyword_search(
        self,
        vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        using: str = KEYWORD_VECTOR_NAME,
    ) -> list[ScoredPoint]:
        response = self.client.query_points(
            self.collection,
            query=sparse_vector(vector),
            using=using,
            query_filter=qdrant_filter(book_filter),
            limit=limit,
            with_payload=True,
        )
        return scored_points(response)

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
                    query=sparse_vector(keyword_vector),
                    using=KEYWORD_VECTOR_NAME,
                    filter=points_filter,
                    limit=candidates,
                ),
            ],
            query=fusion_query(fusion),
            limit=limit,
            with_payload=True,
        )
        return scored_points(response)

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
        return scored_points(response)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self.client.retrieve(
            self.collection, ids=list(ids), with_payload=True, with_vectors=with_vectors
        )
        return [stored_point(record) for record in records]

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
        return [stored_point(record) for record in records]

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
        return [stored_point(record) for record in records], (
            None if next_offset is None else str(next_offset)
        )

    def indexing_status(self) -> tuple[int, int]:
        info = self.client.get_collection(self.collection)
        return info.points_count or 0, info.indexed_vectors_count or 0

    def close(self) -> None:
        self.client.close()

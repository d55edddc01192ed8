"""The embedded default: a Qdrant Edge shard per collection, in-process, under the data folder.

The shard's folder on disk (layout, manifest, lock, crash-safe swaps): `edge_folder.py`.

A shard of an earlier release holds dense vectors only, or issue 18's unfolded BM25 vector
without the title-and-author trigrams; the first open copies it, with the sparse vectors
computed from the stored payloads (never from its old sparse vector), into a `.partial-*`
folder, checks the copy, then swaps the two (the old shard waits as `.<collection>.previous-*`
until the new one is in place, and an open that finds only that folder puts it back). Until that
succeeds the old shard is left as it was and answers dense searches.

When HNSW builds happen: Edge builds nothing on its own. Closing a store that was written to runs
`EdgeShard.optimize()`, which indexes a segment only once its unindexed part passes Edge's
indexing threshold (about 6,500 384-d vectors), merging it into the indexed segment; below that
it returns at once. So a load of a few files pays nothing, one load in a few hundred pays seconds,
and searches full-scan at most that small unindexed tail (docs/qdrant.md has the figures).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from book_pipeline.core.runtime.disk_space import DiskFullError
from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import (
    EDGE_ENGINE,
    HYBRID_FUSION,
    PIPELINE_FIELD,
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
from book_pipeline.core.store.copying import copy_collection
from book_pipeline.core.store.edge_conversions import (
    DENSE_VECTOR_NAME,
    edge_filter,
    hybrid_request,
    keyword_query,
    nearest,
    query_request,
    recommend_query,
    scored_points,
    stored_point,
)
from book_pipeline.core.store.edge_folder import (
    build_empty_shard,
    has_sparse_vector,
    load_shard,
    manifest_stamp,
    new_manifest,
    partial_folder,
    swap_in_folder,
    write_manifest,
)
from book_pipeline.core.store.edge_space import (
    PlannedWrite,
    optimizer_refusal,
    planned_edge_upsert,
    require_space_for,
)
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME, SparseVector
from book_pipeline.core.store.name_vectors import NAME_VECTOR_NAME

STORE_DESCRIPTION = "the embedded Qdrant store"
# Larger than any books folder: a facet returns at most this many source files.
_FACET_LIMIT = 10_000_000


class EdgeStore(BookVectorStore):
    engine = EDGE_ENGINE

    def __init__(
        self,
        folder: Path,
        collection: str,
        lock_handle: Any | None,
        settings: CollectionSettings | None = None,
        shard_path: Path | None = None,
    ) -> None:
        self.folder = folder
        self.collection = collection
        self.shard_path = shard_path or folder / collection
        self.location = str(self.shard_path)
        self.settings = settings or CollectionSettings()
        self._lock_handle = lock_handle
        self._shard: edge.EdgeShard | None = None
        self._manifest: dict[str, Any] | None = None
        self._written = False
        self._keyword_vectors = False
        # At least the points in the shard, for the free-space check of each upsert: counting
        # them exactly per batch cost a tenth of a load's write time. Deletes leave it high,
        # which only asks for more space than needed.
        self._points_bound: int | None = None
        if self.shard_path.exists():
            self._load()

    def collection_exists(self) -> bool:
        return self._shard is not None

    def _create_collection(self, dimension: int, model_name: str) -> None:
        require_space_for(self.folder, PlannedWrite(0, 0), STORE_DESCRIPTION)
        partial = partial_folder(self.folder, self.collection)
        manifest = new_manifest(model_name, dimension, new_generation())
        build_empty_shard(partial, self.settings, dimension, manifest)
        self._move_into_place(partial)

    @contextmanager
    def staging_collection(self, dimension: int, model_name: str) -> Iterator[EdgeStore]:
        """A new collection built beside this missing one, moved into place if the block ends
        without an error, else deleted: the collection appears whole or not at all.

        It has no generation: it holds the previous version's points, which the ledger's
        records from that version describe (they are adopted at its first load).
        """
        partial = partial_folder(self.folder, self.collection)
        manifest = new_manifest(model_name, dimension, generation=None)
        build_empty_shard(partial, self.settings, dimension, manifest)
        staging = EdgeStore(self.folder, self.collection, None, self.settings, partial)
        try:
            yield staging
        except BaseException:
            staging._written = False  # no index build for a copy that is thrown away
            staging.close()
            shutil.rmtree(partial, ignore_errors=True)
            raise
        staging.close()
        self._move_into_place(partial)

    def _move_into_place(self, partial: Path) -> None:
        os.replace(partial, self.shard_path)
        self._load()

    def _load(self) -> None:
        self._shard, self._manifest = load_shard(self.shard_path)
        self._points_bound = None
        self._keyword_vectors = all(
            has_sparse_vector(self.shard_path, name)
            for name in (KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME)
        )

    def has_keyword_vectors(self) -> bool:
        return self._keyword_vectors

    def add_keyword_vectors(self) -> int:
        """Rebuild this shard with the sparse vectors made from its payloads; return
        the points copied. On any failure the shard is left as it was and the error says so."""
        assert self._shard is not None and self._manifest is not None, "no collection"
        dimension, _ = self.collection_model()
        partial = partial_folder(self.folder, self.collection)
        try:
            # Every manifest key is kept: what else it records must survive the rebuild.
            build_empty_shard(partial, self.settings, dimension, dict(self._manifest))
            copy = EdgeStore(self.folder, self.collection, None, self.settings, partial)
            try:
                copied = copy_collection(self, copy)
            finally:
                copy.close()
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self._swap_in(partial)
        return copied

    def _swap_in(self, partial: Path) -> None:
        """Put the shard in `partial` in this one's place (`swap_in_folder`), and load it."""
        assert self._shard is not None
        self._shard.flush()
        self._shard.close()
        self._shard = None
        try:
            swap_in_folder(self.folder, self.collection, partial)
        finally:
            self._load()

    def collection_model(self) -> tuple[int, str | None]:
        assert self._manifest is not None, "no collection"
        return int(self._manifest["dimension"]), self._manifest.get("embedding_model")

    def stamp(self) -> CollectionStamp | None:
        return None if self._manifest is None else manifest_stamp(self._manifest)

    def record_load(self, load_sequence: int, generation: str | None = None) -> str:
        shard = self._require_shard()
        assert self._manifest is not None
        # The points first: the manifest must never claim a load the shard could lose.
        shard.flush()
        manifest = {
            **self._manifest,
            "generation": generation or self._manifest.get("generation") or new_generation(),
            "load_sequence": load_sequence,
        }
        write_manifest(self.shard_path, manifest)
        self._manifest = manifest
        return manifest["generation"]

    def stored_counts(self, owner: str | None = None) -> dict[str, int]:
        if self._shard is None:
            return {}
        response = self._shard.facet(
            edge.FacetRequest(
                key="source_file",
                limit=_FACET_LIMIT,
                exact=True,
                filter=edge_filter(owner=owner),
            )
        )
        return {str(hit.value): hit.count for hit in response.hits}

    def claim_books(self, source_files: Sequence[str], pipeline_id: str) -> None:
        shard = self._require_shard()
        shard.update(
            edge.UpdateOperation.create_field_index(PIPELINE_FIELD, edge.PayloadSchemaType.Keyword)
        )
        if source_files:
            unclaimed = edge_filter(source_files=source_files, owner=UNCLAIMED)
            shard.update(
                edge.UpdateOperation.set_payload_by_filter(unclaimed, {PIPELINE_FIELD: pipeline_id})
            )
        self._written = True

    def upsert_points(self, points: Sequence[StoredPoint]) -> None:
        shard = self._require_shard()
        # Edge writes through mmap: a full disk would be a SIGBUS, not an error.
        if self._points_bound is None:
            self._points_bound = self.count()
        planned = planned_edge_upsert(points, self._points_bound)
        require_space_for(self.shard_path, planned, STORE_DESCRIPTION)
        shard.update(
            edge.UpdateOperation.upsert_points(
                [
                    edge.Point(point.id, self._point_vectors(point), point.payload)
                    for point in points
                ]
            )
        )
        self._points_bound += len(points)
        self._written = True

    def _point_vectors(self, point: StoredPoint) -> Any:
        assert point.vector is not None, f"point {point.id} has no vector"
        if not self._keyword_vectors:
            return point.vector
        keyword, name = point_keyword_vector(point), point_name_vector(point)
        return {
            DENSE_VECTOR_NAME: point.vector,
            KEYWORD_VECTOR_NAME: edge.SparseVector(keyword.indices, keyword.values),
            NAME_VECTOR_NAME: edge.SparseVector(name.indices, name.values),
        }

    def remove_books(
        self, source_files: Sequence[str], keep_ids: Sequence[str] = (), owner: str | None = None
    ) -> None:
        if not source_files or self._shard is None:
            return
        points_filter = edge_filter(source_files=source_files, except_ids=keep_ids, owner=owner)
        self._shard.update(edge.UpdateOperation.delete_points_by_filter(points_filter))
        self._written = True

    def count(self) -> int:
        if self._shard is None:
            return 0
        return self._shard.count(edge.CountRequest(exact=True))

    def search(
        self, vector: Sequence[float], limit: int, book_filter: BookFilter | None = None
    ) -> list[ScoredPoint]:
        return self._query(query_request(limit, nearest(vector), edge_filter(book_filter)))

    def keyword_search(
        self,
        vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        using: str = KEYWORD_VECTOR_NAME,
    ) -> list[ScoredPoint]:
        query = keyword_query(vector, using)
        return self._query(query_request(limit, query, edge_filter(book_filter)))

    def hybrid_search(
        self,
        vector: Sequence[float],
        keyword_vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        fusion: HybridFusion = HYBRID_FUSION,
    ) -> list[ScoredPoint]:
        request = hybrid_request(vector, keyword_vector, limit, edge_filter(book_filter), fusion)
        return self._query(request)

    def recommend(
        self,
        positives: Sequence[Sequence[float]],
        negatives: Sequence[Sequence[float]],
        limit: int,
        book_filter: BookFilter | None = None,
        except_ids: Sequence[str] = (),
    ) -> list[ScoredPoint]:
        query = recommend_query(positives, negatives)
        points_filter = edge_filter(book_filter, except_ids=except_ids)
        return self._query(query_request(limit, query, points_filter))

    def _query(self, request: edge.QueryRequest) -> list[ScoredPoint]:
        return scored_points(self._require_shard().query(request))

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self._require_shard().retrieve(
            list(ids), with_payload=True, with_vector=with_vectors
        )
        return [stored_point(record) for record in records]

    def books_titled(self, title: str, limit: int) -> list[StoredPoint]:
        records, _ = self._require_shard().scroll(
            edge.ScrollRequest(
                limit=limit,
                filter=edge.Filter(
                    must=[edge.FieldCondition(key="title", match=edge.MatchValue(title))]
                ),
                with_payload=True,
                with_vector=True,
            )
        )
        return [stored_point(record) for record in records]

    def scroll(
        self, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[StoredPoint], str | None]:
        records, next_offset = self._require_shard().scroll(
            edge.ScrollRequest(
                offset=offset, limit=limit, with_payload=True, with_vector=with_vectors
            )
        )
        return [stored_point(record) for record in records], (
            None if next_offset is None else str(next_offset)
        )

    def indexing_status(self) -> tuple[int, int]:
        if self._shard is None:
            return 0, 0
        info = self._shard.info()
        # Edge counts every point's sparse vectors as indexed (an inverted index holds them at
        # once): what is left is the dense vectors in an HNSW index.
        sparse = 2 if self._keyword_vectors else 0
        return info.points_count, max(0, info.indexed_vectors_count - sparse * info.points_count)

    def build_index(self) -> bool:
        """Index what passed Edge's indexing threshold now; False when nothing needed it."""
        if self._shard is None:
            return False
        return self._shard.optimize()

    def close(self) -> None:
        try:
            if self._shard is not None:
                refused: DiskFullError | None = None
                if self._written:
                    try:
                        self._shard.optimize()
                    except Exception as error:  # the engine raises a bare Exception
                        refused = optimizer_refusal(error, self.shard_path)
                        if refused is None:
                            raise
                self._shard.flush()
                self._shard.close()
                self._shard = None
                if refused is not None:
                    raise refused
        finally:
            if self._lock_handle is not None:
                self._lock_handle.close()

    def _require_shard(self) -> edge.EdgeShard:
        if self._shard is None:
            raise RuntimeError(
                f"Qdrant collection {self.collection!r} does not exist yet in {self.folder}: "
                "ensure_collection() creates it"
            )
        return self._shard

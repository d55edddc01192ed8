"""The embedded default: a Qdrant Edge shard per collection, in-process, under the data folder.

Layout of the store folder (`$BOOK_PIPELINE_DATA_DIR/qdrant-edge`):

    .lock                       held (flock) by the one process that has the store open
    <collection>/               the Edge shard: WAL, segments, edge_config.json
    <collection>/book_pipeline.json   what the shard was made for (model, dimension), its
                                      generation and the sequence number of its last load

A shard is created, or copied from the previous version's store, in a `.<collection>.partial-*`
folder that is renamed into place only once complete (and, for a copy, verified): a
`<collection>` folder is therefore always a whole shard. One without its `book_pipeline.json`, or
one Edge cannot load, is reported and left alone, never replaced by an empty one.

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

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from book_pipeline.core.runtime.disk_space import DiskFullError
from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import (
    EDGE_ENGINE,
    HYBRID_FUSION,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PIPELINE_FIELD,
    UNCLAIMED,
    BookFilter,
    BookVectorStore,
    CollectionStamp,
    HybridFusion,
    ScoredPoint,
    StoreDamagedError,
    StoredPoint,
    StoreLockedError,
    new_generation,
    point_keyword_vector,
    point_name_vector,
)
from book_pipeline.core.store.copying import copy_collection
from book_pipeline.core.store.edge_space import (
    PlannedWrite,
    optimizer_refusal,
    planned_edge_upsert,
    require_space_for,
)
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME, SparseVector
from book_pipeline.core.store.name_vectors import NAME_VECTOR_NAME
from book_pipeline.core.store.read_only import tell_upgrade_waits

MANIFEST_NAME = "book_pipeline.json"
# Edge's own record of the shard's layout, written when the shard is created.
EDGE_CONFIG_NAME = "edge_config.json"
LOCK_NAME = ".lock"
STORE_DESCRIPTION = "the embedded Qdrant store"
_PARTIAL_PREFIX = "."
_PARTIAL_MARK = ".partial-"
_PREVIOUS_MARK = ".previous-"
_LOCK_POLL_SECONDS = 0.2
# Edge's own defaults, spelled out because HnswIndexConfig takes all three or none.
_DEFAULT_HNSW_M = 16
_DEFAULT_HNSW_EF_CONSTRUCT = 100
_DEFAULT_FULL_SCAN_THRESHOLD_KB = 10_000
# Larger than any books folder: a facet returns at most this many source files.
_FACET_LIMIT = 10_000_000
# The dense vector is the unnamed default: the previous release's shards have only that one.
_DENSE_VECTOR_NAME = ""


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
        partial = _partial_folder(self.folder, self.collection)
        manifest = _new_manifest(model_name, dimension, new_generation())
        _build_empty_shard(partial, self.settings, dimension, manifest)
        self._move_into_place(partial)

    @contextmanager
    def staging_collection(self, dimension: int, model_name: str) -> Iterator[EdgeStore]:
        """A new collection built beside this missing one, moved into place if the block ends
        without an error, else deleted: the collection appears whole or not at all.

        It has no generation: it holds the previous version's points, which the ledger's
        records from that version describe (they are adopted at its first load).
        """
        partial = _partial_folder(self.folder, self.collection)
        manifest = _new_manifest(model_name, dimension, generation=None)
        _build_empty_shard(partial, self.settings, dimension, manifest)
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
        self._shard, self._manifest = _load_shard(self.shard_path)
        self._points_bound = None
        self._keyword_vectors = all(
            _has_sparse_vector(self.shard_path, name)
            for name in (KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME)
        )

    def has_keyword_vectors(self) -> bool:
        return self._keyword_vectors

    def add_keyword_vectors(self) -> int:
        """Rebuild this shard with the sparse vectors made from its payloads; return
        the points copied. On any failure the shard is left as it was and the error says so."""
        assert self._shard is not None and self._manifest is not None, "no collection"
        dimension, _ = self.collection_model()
        partial = _partial_folder(self.folder, self.collection)
        try:
            # Every manifest key is kept: what else it records must survive the rebuild.
            _build_empty_shard(partial, self.settings, dimension, dict(self._manifest))
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
        """Put the shard in `partial` in this one's place; the old one is deleted last."""
        assert self._shard is not None
        self._shard.flush()
        self._shard.close()
        self._shard = None
        previous = Path(
            tempfile.mkdtemp(
                prefix=f"{_PARTIAL_PREFIX}{self.collection}{_PREVIOUS_MARK}", dir=self.folder
            )
        )
        moved_away = False
        try:
            os.replace(self.shard_path, previous / self.collection)
            moved_away = True
            os.replace(partial, self.shard_path)
        except BaseException:
            if moved_away:
                os.replace(previous / self.collection, self.shard_path)
            shutil.rmtree(previous, ignore_errors=True)
            self._load()
            raise
        self._load()
        shutil.rmtree(previous, ignore_errors=True)

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
            _DENSE_VECTOR_NAME: point.vector,
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
        points = self._require_shard().query(
            edge.QueryRequest(
                limit=limit,
                query=edge.Query.Nearest(list(vector)),
                filter=edge_filter(book_filter),
                with_payload=True,
            )
        )
        return _scored(points)

    def keyword_search(
        self,
        vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        using: str = KEYWORD_VECTOR_NAME,
    ) -> list[ScoredPoint]:
        points = self._require_shard().query(
            edge.QueryRequest(
                limit=limit,
                query=_keyword_query(vector, using),
                filter=edge_filter(book_filter),
                with_payload=True,
            )
        )
        return _scored(points)

    def hybrid_search(
        self,
        vector: Sequence[float],
        keyword_vector: SparseVector,
        limit: int,
        book_filter: BookFilter | None = None,
        fusion: HybridFusion = HYBRID_FUSION,
    ) -> list[ScoredPoint]:
        points_filter = edge_filter(book_filter)
        candidates = max(limit, fusion.candidates)
        points = self._require_shard().query(
            edge.QueryRequest(
                limit=limit,
                prefetches=[
                    edge.Prefetch(
                        limit=candidates,
                        query=edge.Query.Nearest(list(vector)),
                        filter=points_filter,
                    ),
                    edge.Prefetch(
                        limit=candidates, query=_keyword_query(keyword_vector), filter=points_filter
                    ),
                ],
                query=_edge_fusion(fusion),
                with_payload=True,
            )
        )
        return _scored(points)

    def recommend(
        self,
        positives: Sequence[Sequence[float]],
        negatives: Sequence[Sequence[float]],
        limit: int,
        book_filter: BookFilter | None = None,
        except_ids: Sequence[str] = (),
    ) -> list[ScoredPoint]:
        query = edge.RecommendQuery(
            [list(vector) for vector in positives], [list(vector) for vector in negatives]
        )
        points = self._require_shard().query(
            edge.QueryRequest(
                limit=limit,
                query=edge.Query.RecommendSumScores(query),
                filter=edge_filter(book_filter, except_ids=except_ids),
                with_payload=True,
            )
        )
        return _scored(points)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[StoredPoint]:
        records = self._require_shard().retrieve(
            list(ids), with_payload=True, with_vector=with_vectors
        )
        return [_stored(record) for record in records]

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
        return [_stored(record) for record in records]

    def scroll(
        self, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[StoredPoint], str | None]:
        records, next_offset = self._require_shard().scroll(
            edge.ScrollRequest(
                offset=offset, limit=limit, with_payload=True, with_vector=with_vectors
            )
        )
        return [_stored(record) for record in records], (
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


def _scored(points: list[Any]) -> list[ScoredPoint]:
    return [ScoredPoint(str(point.id), point.score, point.payload or {}) for point in points]


def _keyword_query(vector: SparseVector, using: str = KEYWORD_VECTOR_NAME) -> edge.Query:
    return edge.Query.Nearest(edge.SparseVector(vector.indices, vector.values), using=using)


def _edge_fusion(fusion: HybridFusion) -> Any:
    if fusion.method == "dbsf":
        return edge.Fusion.Dbsf()
    return edge.Fusion.Rrf(k=fusion.rrf_k, weights=[fusion.dense_weight, fusion.keyword_weight])


def _stored(record: Any) -> StoredPoint:
    vector = record.vector
    sparse: dict[str, SparseVector] = {}
    if isinstance(vector, dict):
        for name in (KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME):
            stored = vector.get(name)
            if stored is not None:
                sparse[name] = SparseVector(list(stored.indices), list(stored.values))
        vector = vector.get(_DENSE_VECTOR_NAME)
    return StoredPoint(
        id=str(record.id),
        payload=record.payload or {},
        vector=list(vector) if isinstance(vector, list) else None,
        keyword_vector=sparse.get(KEYWORD_VECTOR_NAME),
        name_vector=sparse.get(NAME_VECTOR_NAME),
    )


def _has_sparse_vector(path: Path, name: str) -> bool:
    """Whether the loaded shard stores the sparse vector `name` (Edge's own config file says)."""
    try:
        config = json.loads((path / EDGE_CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return name in (config.get("sparse_vectors") or {})


def _partial_folder(folder: Path, collection: str) -> Path:
    return Path(
        tempfile.mkdtemp(prefix=f"{_PARTIAL_PREFIX}{collection}{_PARTIAL_MARK}", dir=folder)
    )


def _new_manifest(model_name: str, dimension: int, generation: str | None) -> dict[str, Any]:
    """What a new shard is made for, and that no load has written to it yet."""
    manifest: dict[str, Any] = {"embedding_model": model_name, "dimension": dimension}
    if generation is not None:
        manifest["generation"] = generation
    manifest["load_sequence"] = 0
    return manifest


def _build_empty_shard(
    path: Path, settings: CollectionSettings, dimension: int, manifest: dict[str, Any]
) -> None:
    """A closed, empty shard with the payload indexes and, written last, its manifest (a
    rebuilt shard is given the old one's)."""
    shard = edge.EdgeShard.create(str(path), edge_config(settings, dimension))
    schemas = {
        **dict.fromkeys(KEYWORD_FIELDS, edge.PayloadSchemaType.Keyword),
        **dict.fromkeys(INTEGER_FIELDS, edge.PayloadSchemaType.Integer),
    }
    for field, schema in schemas.items():
        shard.update(edge.UpdateOperation.create_field_index(field, schema))
    shard.flush()
    shard.close()
    write_manifest(path, manifest)


def write_manifest(
    shard_path: Path, manifest: dict[str, Any], file_name: str = MANIFEST_NAME
) -> None:
    """Replace the manifest (or another small JSON file of the store) whole: a temporary file
    renamed over it, never half written."""
    manifest_path = shard_path / file_name
    temporary = manifest_path.with_name(f".{file_name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, manifest_path)
    directory = os.open(shard_path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def manifest_stamp(manifest: dict[str, Any]) -> CollectionStamp:
    return CollectionStamp(manifest.get("generation"), int(manifest.get("load_sequence", 0)))


def read_edge_stamp(folder: Path, collection: str) -> CollectionStamp | None:
    """The collection's stamp from its manifest alone: no lock, no shard load, so a sensor can
    ask while a load holds the store. None when there is no collection."""
    shard_path = folder.expanduser().resolve() / collection
    if not shard_path.exists():
        return None
    return manifest_stamp(_read_manifest(shard_path))


def _load_shard(path: Path) -> tuple[edge.EdgeShard, dict[str, Any]]:
    """Open a shard and its manifest, or say what is wrong with the folder (never repair it)."""
    manifest = _read_manifest(path)
    try:
        shard = edge.EdgeShard.load(str(path))
    except Exception as error:  # qdrant-edge raises bare Exception for everything
        if "WouldBlock" in str(error):
            raise StoreLockedError(
                f"the Qdrant Edge shard {path} is open in another process"
            ) from None
        raise StoreDamagedError(
            f"the Qdrant Edge shard {path} cannot be loaded ({error}); it is left as it is. "
            "Restore it from a backup or move it away to start an empty collection."
        ) from None
    return shard, manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        int(manifest["dimension"])
        int(manifest.get("load_sequence", 0))
    except FileNotFoundError:
        raise StoreDamagedError(
            f"{path} is not a complete book_pipeline shard (no {MANIFEST_NAME}): it was partly "
            "written or made by something else. It is left as it is; move it away to start an "
            "empty collection, or restore it from a backup."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreDamagedError(
            f"{manifest_path} cannot be read ({error}); the shard in {path} is left as it is"
        ) from None
    return manifest


def _lock(folder: Path, wait_seconds: float, on_wait: Callable[[str], None] | None) -> Any:
    """Hold the store's lock file, waiting a bounded time while another process has it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_NAME).open("a")
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise StoreLockedError(
                    f"the embedded Qdrant store {folder} is still in use by another process "
                    f"after {wait_seconds:.0f} s (a running load?). Try again when it has "
                    "finished, or use a Qdrant server (QDRANT_URL) for concurrent access."
                ) from None
            if on_wait is not None and not announced:
                on_wait(
                    f"the embedded Qdrant store {folder} is in use by another process; "
                    f"waiting up to {wait_seconds:.0f} s"
                )
                announced = True
            time.sleep(_LOCK_POLL_SECONDS)


def _remove_partial_folders(folder: Path, collection: str) -> None:
    """Leftovers of a create or copy that died before its rename: never a complete shard.

    A swap that died between its two renames left the old shard in a `.previous-*` folder and
    none in place: that one is put back (it is whole); one beside a shard in place is deleted.
    """
    for leftover in folder.glob(f"{_PARTIAL_PREFIX}{collection}{_PARTIAL_MARK}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for previous in folder.glob(f"{_PARTIAL_PREFIX}{collection}{_PREVIOUS_MARK}*"):
        if not (folder / collection).exists() and (previous / collection).is_dir():
            os.replace(previous / collection, folder / collection)
        shutil.rmtree(previous, ignore_errors=True)


def open_edge_store(
    collection: str,
    folder: Path,
    lock_wait_seconds: float,
    on_wait: Callable[[str], None] | None,
    settings: CollectionSettings | None,
    read_only: bool = False,
) -> EdgeStore:
    """Open (locked) for a load, which tidies what a crash left and upgrades a shard of the
    previous release; `read_only` leaves both for the next load (`store.read_only`)."""
    folder = folder.expanduser().resolve()
    lock_handle = _lock(folder, lock_wait_seconds, on_wait)
    try:
        if not read_only:
            _remove_partial_folders(folder, collection)
        store = EdgeStore(folder, collection, lock_handle, settings)
    except BaseException:
        lock_handle.close()
        raise
    if store.collection_exists() and not store.has_keyword_vectors():
        if read_only:
            tell_upgrade_waits(store, on_wait)
        else:
            _add_keyword_vectors(store, on_wait)
    return store


def _add_keyword_vectors(store: EdgeStore, on_progress: Callable[[str], None] | None) -> None:
    """Upgrade a shard of the previous release in place, or say why it stays dense-only."""

    def tell(message: str) -> None:
        if on_progress is not None:
            on_progress(message)

    tell(
        f"adding accent-folded BM25 keyword vectors and title-and-author trigrams to the Qdrant "
        f"Edge shard {store.shard_path} (once; made from the stored titles, authors and "
        "descriptions, no re-embedding)"
    )
    try:
        copied = store.add_keyword_vectors()
    # Whatever failed (a full or read-only disk, the engine's bare Exception), the old shard is
    # whole and still open: it answers dense searches, and the next open tries again.
    except Exception as error:
        tell(
            f"could not add keyword vectors to {store.shard_path} ({error}); it is left as it "
            "was and answers dense searches only until an open succeeds in adding them"
        )
        return
    tell(f"added keyword vectors to {copied:,} points in {store.shard_path}")

"""What an upsert into the embedded Edge store needs on disk, checked before it writes.

Qdrant Edge writes its WAL and its segments through memory-mapped files that grow sparse: a
page is given a disk block only when it is first written, and a page the full disk cannot back
kills the process with SIGBUS, with no error, no failed step and no alert. So before each write
the embedded store checks that its filesystem can hold what the write may need
(`planned_edge_upsert`, `require_space_for`): the points twice (the WAL keeps each operation
whole, the segment stores it again), and a rewrite of the collection once it is large enough for
an index build to be due.

A new WAL segment (32 MiB) is created sparse as well: it costs its blocks only as operations
fill it, which the points already count. The fixed margin covers the rest: the filesystem's
own metadata, a block started per mmap file, and the payload indexes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.core.runtime.disk_space import (
    FIXED_MARGIN_BYTES,
    DiskFullError,
    describe_bytes,
    free_bytes,
)
from book_pipeline.core.store.base import StoredPoint

# Per point, besides its vectors and payload: its id, version and tracker entries, and the
# payload indexes' entries (author, source file, year).
POINT_OVERHEAD_BYTES = 256
# An index build writes the indexed segment anew, with the HNSW graph beside the vectors.
INDEX_BUILD_FACTOR = 1.5
_BYTES_PER_SPARSE_ENTRY = 8  # a u32 index and an f32 value
# A point stored without its keyword vector computed yet gets one of about a word per this many
# bytes of payload.
_PAYLOAD_BYTES_PER_KEYWORD = 4
# Edge indexes a segment once its unindexed vectors pass the optimizer's indexing threshold,
# 10,000 KB (about 6,500 384-d vectors); counted in bytes of 1,000 it is reached a little early.
EDGE_INDEXING_THRESHOLD_BYTES = 10_000 * 1000
# Edge's optimizer checks the space an index build needs before it starts.
_OPTIMIZER_REFUSAL = re.compile(
    r"Not enough space available for optimization, needed: ([\d.]+) MiB, available: ([\d.]+) MiB"
)


@dataclass(frozen=True)
class PlannedWrite:
    """What an upsert will write, as the store's check needs it."""

    points: int
    # Vectors, payloads and keyword vectors of the points, as stored (see `point_bytes`).
    point_bytes: int
    # Points an index build that the write makes due would rewrite; 0: none due.
    points_to_index: int = 0
    # Bytes per point of the collection, for the index build (the batch's average).
    average_point_bytes: int = 0


def point_bytes(point: StoredPoint) -> int:
    """One point as stored: its float32 dense vector, its payload as JSON, its sparse vectors."""
    return batch_bytes([point])


def batch_bytes(points: Sequence[StoredPoint]) -> int:
    """The points as stored, their payloads encoded in one call: one `json.dumps` per point was
    a tenth of a load's write time."""
    if not points:
        return 0
    payloads = _json_bytes([point.payload for point in points])
    without_vectors = [point.payload for point in points if point.keyword_vector is None]
    estimated_entries = _json_bytes(without_vectors) // _PAYLOAD_BYTES_PER_KEYWORD
    entries = estimated_entries + sum(
        len(vector.indices)
        for point in points
        for vector in (point.keyword_vector, point.name_vector)
        if vector is not None
    )
    return (
        4 * sum(len(point.vector or ()) for point in points)
        + payloads
        + _BYTES_PER_SPARSE_ENTRY * entries
        + POINT_OVERHEAD_BYTES * len(points)
    )


def _json_bytes(payloads: list[dict]) -> int:
    """The payloads' JSON, all but the list's brackets and the ", " between its items."""
    if not payloads:
        return 0
    encoded = len(json.dumps(payloads, ensure_ascii=False).encode())
    return encoded - 2 - 2 * (len(payloads) - 1)


def planned_edge_upsert(points: Sequence[StoredPoint], points_count: int) -> PlannedWrite:
    """An upsert into an Edge shard holding `points_count` points.

    Edge does not say how many of its vectors wait for an index (its `indexed_vectors_count`
    counts the plain index too), so a collection that reaches the indexing threshold is taken to
    be due for an index build at every write, one that may write the whole collection again:
    Edge's optimizer refuses to start with less free space than about that.
    """
    if not points:
        return PlannedWrite(0, 0)
    total = batch_bytes(points)
    dimension = max(len(point.vector or ()) for point in points)
    after = points_count + len(points)
    due = after * 4 * dimension >= EDGE_INDEXING_THRESHOLD_BYTES
    return PlannedWrite(
        points=len(points),
        point_bytes=total,
        points_to_index=after if due else 0,
        average_point_bytes=total // len(points),
    )


def bytes_needed(write: PlannedWrite) -> int:
    """Free bytes the write must find: WAL and segment copies of the batch, the index build's
    rewrite when one is due, and the fixed margin."""
    batch = 2 * write.point_bytes
    index_build = int(write.points_to_index * write.average_point_bytes * INDEX_BUILD_FACTOR)
    return batch + index_build + FIXED_MARGIN_BYTES


def require_space_for(folder: Path, write: PlannedWrite, what: str) -> None:
    """Raise `DiskFullError` naming the folder, the bytes free and needed, before a write that
    the filesystem may not hold."""
    needed = bytes_needed(write)
    free = free_bytes(folder)
    if free >= needed:
        return
    index = (
        f", and an index build over {write.points_to_index:,} points"
        if write.points_to_index
        else ""
    )
    raise DiskFullError(
        f"not enough free space for {what} in {folder}: {describe_bytes(free)} free, "
        f"{describe_bytes(needed)} needed to write {write.points:,} points (the batch in the "
        f"WAL and in a segment{index}, and a {describe_bytes(FIXED_MARGIN_BYTES)} margin). "
        "Nothing was written: free space on that filesystem (or move BOOK_PIPELINE_DATA_DIR), "
        "and the next run loads these books.",
        folder,
        free,
        needed,
    )


def optimizer_refusal(error: Exception, folder: Path) -> DiskFullError | None:
    """Edge's refusal to build an index without room for it, as a `DiskFullError`; None for any
    other error. Batches admitted one by one can leave less room at the end of a load than the
    index build they made due needs."""
    found = _OPTIMIZER_REFUSAL.search(str(error))
    if found is None:
        return None
    needed, free = (int(float(mebibytes) * 2**20) for mebibytes in found.groups())
    return DiskFullError(
        f"not enough free space to index the embedded Qdrant store in {folder}: "
        f"{describe_bytes(free)} free, {describe_bytes(needed)} needed for its HNSW index build "
        "(Qdrant Edge's own figures). The points are written and searchable; free space on that "
        "filesystem, and the next load that writes builds the index.",
        folder,
        free,
        needed,
    )

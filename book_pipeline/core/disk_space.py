"""A full disk is an error that names the folder, not a process killed by SIGBUS.

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

The ledger and the embedding cache are SQLite files: a full disk there is an error already
("database or disk is full"), which `naming_full_disk` turns into one that names the file and
the space left.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.core.store.base import StoredPoint

# The filesystem's metadata, a first block in each mmap file a write touches, the payload
# indexes' pages, the manifest: what no per-point figure counts.
FIXED_MARGIN_BYTES = 4 * 1024 * 1024
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
_SQLITE_FULL_MESSAGE = "database or disk is full"
# Edge's optimizer checks the space an index build needs before it starts.
_OPTIMIZER_REFUSAL = re.compile(
    r"Not enough space available for optimization, needed: ([\d.]+) MiB, available: ([\d.]+) MiB"
)


class DiskFullError(RuntimeError):
    """Not enough free space where the pipeline writes; retrying cannot help, freeing space does.

    Nothing was written when the store refused a write: the next run, once space is freed,
    loads the same books (the same point ids). `needed_bytes` is what a new attempt wants free
    in `folder`: the write's estimate, or for a file that met a full disk, the margin more than
    was free then.
    """

    def __init__(self, message: str, folder: Path, free_bytes: int, needed_bytes: int):
        super().__init__(message)
        self.folder = folder
        self.free_bytes = free_bytes
        self.needed_bytes = needed_bytes


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
    """One point as stored: its float32 dense vector, its payload as JSON, its sparse vector."""
    payload = len(json.dumps(point.payload, ensure_ascii=False).encode())
    if point.keyword_vector is not None:
        keywords = len(point.keyword_vector.indices)
    else:
        keywords = payload // _PAYLOAD_BYTES_PER_KEYWORD
    return (
        4 * len(point.vector or ())
        + payload
        + _BYTES_PER_SPARSE_ENTRY * keywords
        + POINT_OVERHEAD_BYTES
    )


def planned_edge_upsert(points: Sequence[StoredPoint], points_count: int) -> PlannedWrite:
    """An upsert into an Edge shard holding `points_count` points.

    Edge does not say how many of its vectors wait for an index (its `indexed_vectors_count`
    counts the plain index too), so a collection that reaches the indexing threshold is taken to
    be due for an index build at every write, one that may write the whole collection again:
    Edge's optimizer refuses to start with less free space than about that.
    """
    sizes = [point_bytes(point) for point in points]
    if not sizes:
        return PlannedWrite(0, 0)
    dimension = max(len(point.vector or ()) for point in points)
    after = points_count + len(points)
    due = after * 4 * dimension >= EDGE_INDEXING_THRESHOLD_BYTES
    return PlannedWrite(
        points=len(points),
        point_bytes=sum(sizes),
        points_to_index=after if due else 0,
        average_point_bytes=sum(sizes) // len(sizes),
    )


def bytes_needed(write: PlannedWrite) -> int:
    """Free bytes the write must find: WAL and segment copies of the batch, the index build's
    rewrite when one is due, and the fixed margin."""
    batch = 2 * write.point_bytes
    index_build = int(write.points_to_index * write.average_point_bytes * INDEX_BUILD_FACTOR)
    return batch + index_build + FIXED_MARGIN_BYTES


def free_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer on the folder's filesystem (the nearest existing
    ancestor when the folder does not exist yet)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def folder_size_bytes(folder: Path) -> int:
    """Bytes the folder's files take on disk (their allocated blocks: a sparse mmap file counts
    what it holds, not its length)."""
    if not folder.exists():
        return 0
    total = 0
    for path in [folder, *folder.rglob("*")]:
        try:
            total += path.lstat().st_blocks * 512
        except FileNotFoundError:  # removed while walking (a running load's temporary file)
            continue
    return total


def describe_bytes(count: int) -> str:
    if count >= 2**30:
        return f"{count:,} bytes ({count / 2**30:.1f} GiB)"
    return f"{count:,} bytes ({count / 2**20:.1f} MiB)"


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


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(error, sqlite3.OperationalError) and _SQLITE_FULL_MESSAGE in str(error)


@contextmanager
def naming_full_disk(path: Path) -> Iterator[None]:
    """Turn a full disk met while writing `path` into a `DiskFullError` naming it and the free
    space; any other error passes."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as error:
        if not is_disk_full(error):
            raise
        free = free_bytes(path)
        raise DiskFullError(
            f"the disk is full: could not write {path} ({describe_bytes(free)} free on its "
            f"filesystem): {error}. Free space there, and the next run goes on.",
            path,
            free,
            free + FIXED_MARGIN_BYTES,
        ) from error


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

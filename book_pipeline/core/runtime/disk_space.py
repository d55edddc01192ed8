"""A full disk is an error that names the folder and the space left, not a crash.

`DiskFullError` is what every writer raises when its filesystem cannot hold a write: the Edge
store before an upsert (`core/store/edge_space.py` plans what an upsert needs), and the ledger,
the run leases and the embedding cache, SQLite files for which a full disk is an error already
("database or disk is full"), which `naming_full_disk` turns into one that names the file and
the space left.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The filesystem's metadata, a first block in each mmap file a write touches, the payload
# indexes' pages, the manifest: what no per-point figure counts.
FIXED_MARGIN_BYTES = 4 * 1024 * 1024
_SQLITE_FULL_MESSAGE = "database or disk is full"


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

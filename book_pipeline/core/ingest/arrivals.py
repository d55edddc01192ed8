"""Deciding, at a sensor tick, which arrived files are ready and how to batch them into runs.

Pure functions: the sensor feeds them the folder's review, what it saw at the previous tick and
which files running runs already hold, and turns the plan into run requests.
"""

import hashlib
from dataclasses import dataclass, field

from book_pipeline.core.books.files import FileSnapshot
from book_pipeline.core.ingest.folder_review import FolderReview

# name -> [size, mtime_ns], as JSON keeps it in the sensor's cursor.
SeenFiles = dict[str, list[int]]


@dataclass(frozen=True)
class PlannedBatch:
    """One run's worth of work: files to load, or (with no files) deleted files to clean up."""

    batch_id: str
    files: list[str]
    removed_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TickPlan:
    batches: list[PlannedBatch]
    still_settling: list[str]
    seen: SeenFiles


def is_settled(snapshot: FileSnapshot, seen: SeenFiles, now_ns: int, settle_seconds: int) -> bool:
    """Unchanged since the previous tick, or untouched for the settle time: no longer written."""
    unchanged = seen.get(snapshot.name) == [snapshot.size, snapshot.mtime_ns]
    quiet = now_ns - snapshot.mtime_ns >= settle_seconds * 1_000_000_000
    return unchanged or quiet


def batch_id(lines: list[str]) -> str:
    """The same files in the same versions give the same id, so Dagster's run keys dedupe."""
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:20]


def split_into_batches(
    ready: list[FileSnapshot], first_batch_files: int, max_files_per_run: int
) -> list[list[FileSnapshot]]:
    """The first `first_batch_files` files, then runs of `max_files_per_run`, in order."""
    batches = [ready[:first_batch_files]] if ready else []
    rest = ready[first_batch_files:]
    batches.extend(
        rest[start : start + max_files_per_run] for start in range(0, len(rest), max_files_per_run)
    )
    return batches


def plan_tick(
    review: FolderReview,
    seen: SeenFiles,
    in_flight: set[str],
    now_ns: int,
    settle_seconds: int,
    max_files_per_run: int,
    first_batch_files: int | None = None,
) -> TickPlan:
    """The batches to request now. With no run in flight (the start of a backfill), the first
    batch holds at most `first_batch_files` (None: no smaller first batch): its books are
    searchable within seconds, while the next batches, one run each, follow in turn."""
    first_batch_files = first_batch_files or max_files_per_run
    waiting = [snapshot for snapshot in review.pending if snapshot.name not in in_flight]
    ready = [s for s in waiting if is_settled(s, seen, now_ns, settle_seconds)]
    first = max_files_per_run if in_flight else min(first_batch_files, max_files_per_run)
    batches = [
        PlannedBatch(
            batch_id=batch_id([f"{s.name}:{s.size}:{s.mtime_ns}" for s in chunk]),
            files=[s.name for s in chunk],
        )
        for chunk in split_into_batches(ready, first, max_files_per_run)
    ]
    removed = [entry.file_name for entry in review.removed if entry.file_name not in in_flight]
    if removed and not batches:
        batches.append(
            PlannedBatch(
                batch_id=batch_id([f"removed:{name}" for name in removed]),
                files=[],
                removed_files=removed,
            )
        )
    return TickPlan(
        batches=batches,
        still_settling=[s.name for s in waiting if s not in ready],
        seen={s.name: [s.size, s.mtime_ns] for s in waiting},
    )

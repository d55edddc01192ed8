"""Deciding, at a sensor tick, which arrived files are ready and how to batch them into runs.

Pure functions: the sensor feeds them the folder's review, what it saw at the previous tick and
which files running runs already hold, and turns the plan into run requests.
"""

import hashlib
from dataclasses import dataclass, field

from book_pipeline.core.books.files import FileSnapshot
from book_pipeline.core.ingest.ledger import FolderReview

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


def plan_tick(
    review: FolderReview,
    seen: SeenFiles,
    in_flight: set[str],
    now_ns: int,
    settle_seconds: int,
    max_files_per_run: int,
) -> TickPlan:
    waiting = [snapshot for snapshot in review.pending if snapshot.name not in in_flight]
    ready = [s for s in waiting if is_settled(s, seen, now_ns, settle_seconds)]
    batches = [
        PlannedBatch(
            batch_id=batch_id([f"{s.name}:{s.size}:{s.mtime_ns}" for s in chunk]),
            files=[s.name for s in chunk],
        )
        for chunk in (
            ready[start : start + max_files_per_run]
            for start in range(0, len(ready), max_files_per_run)
        )
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

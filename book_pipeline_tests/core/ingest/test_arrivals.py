"""Batching a drop of files into runs: a small first batch when nothing is loading."""

from pathlib import Path

from book_pipeline.core.books.files import FileSnapshot
from book_pipeline.core.ingest.arrivals import plan_tick
from book_pipeline.core.ingest.folder_review import FolderReview

NOW_NS = 10**18


def review_of(count: int) -> FolderReview:
    # Untouched for an hour: settled.
    pending = [
        FileSnapshot(Path("/books"), f"f{n:03d}.txt", 10, NOW_NS - 3600 * 10**9)
        for n in range(count)
    ]
    return FolderReview(pending=pending, failed_unchanged=[], removed=[], up_to_date=0)


def batch_sizes(count: int, in_flight: set[str]) -> list[int]:
    plan = plan_tick(
        review_of(count),
        seen={},
        in_flight=in_flight,
        now_ns=NOW_NS,
        settle_seconds=30,
        max_files_per_run=100,
        first_batch_files=10,
    )
    return [len(batch.files) for batch in plan.batches]


def test_a_drop_starts_with_a_small_batch_then_full_ones() -> None:
    assert batch_sizes(200, in_flight=set()) == [10, 100, 90]
    assert batch_sizes(5, in_flight=set()) == [5]


def test_while_a_batch_loads_new_files_go_in_full_batches() -> None:
    assert batch_sizes(150, in_flight={"loading.txt"}) == [100, 50]

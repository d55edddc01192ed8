from pathlib import Path

import pytest

from book_pipeline.core.runtime.disk_space import FIXED_MARGIN_BYTES, DiskFullError
from book_pipeline.core.store.base import StoredPoint
from book_pipeline.core.store.edge_space import (
    EDGE_INDEXING_THRESHOLD_BYTES,
    PlannedWrite,
    batch_bytes,
    bytes_needed,
    optimizer_refusal,
    planned_edge_upsert,
    point_bytes,
    require_space_for,
)


def a_point(dimension: int = 384) -> StoredPoint:
    return StoredPoint(id="1", payload={"title": "Dune"}, vector=[0.0] * dimension)


def test_a_write_needs_the_batch_twice_and_the_margin() -> None:
    point = a_point()
    assert point_bytes(point) == 4 * 384 + len('{"title": "Dune"}') + 8 * 4 + 256
    planned = planned_edge_upsert([point] * 10, points_count=100)
    # The batch's payloads are measured together, the keyword entries estimated from all ten.
    assert abs(planned.point_bytes - 10 * point_bytes(point)) <= 8 * 10
    assert planned == PlannedWrite(10, batch_bytes([point] * 10), 0, planned.point_bytes // 10)
    assert bytes_needed(planned) == 2 * planned.point_bytes + FIXED_MARGIN_BYTES


def test_a_collection_past_the_indexing_threshold_needs_room_to_be_indexed_again() -> None:
    threshold_points = EDGE_INDEXING_THRESHOLD_BYTES // (4 * 384)
    below = planned_edge_upsert([a_point()], points_count=threshold_points - 2)
    at = planned_edge_upsert([a_point()], points_count=threshold_points)
    assert below.points_to_index == 0
    assert at.points_to_index == threshold_points + 1
    assert bytes_needed(at) > bytes_needed(below) + threshold_points * point_bytes(a_point())


def test_a_write_the_filesystem_cannot_hold_is_refused_naming_folder_and_bytes(
    tmp_path: Path,
) -> None:
    huge = PlannedWrite(points=3, point_bytes=2**62)
    with pytest.raises(DiskFullError) as raised:
        require_space_for(tmp_path / "not-yet-made", huge, "the embedded Qdrant store")
    message = str(raised.value)
    assert message.startswith(
        f"not enough free space for the embedded Qdrant store in {tmp_path / 'not-yet-made'}: "
    )
    assert f"{raised.value.free_bytes:,} bytes" in message
    assert f"{bytes_needed(huge):,} bytes" in message
    require_space_for(tmp_path, PlannedWrite(3, 3000), "the embedded Qdrant store")


def test_edges_refusal_to_build_an_index_becomes_an_error_naming_the_folder(
    tmp_path: Path,
) -> None:
    # Qdrant Edge's words, as its optimize() raised them on a full 80 MB ext4 image.
    engine = Exception(
        "Service runtime error: Not enough space available for optimization, "
        "needed: 30.77 MiB, available: 28.44 MiB"
    )

    refusal = optimizer_refusal(engine, tmp_path)

    assert refusal is not None
    assert (refusal.needed_bytes, refusal.free_bytes) == (
        int(30.77 * 2**20),
        int(28.44 * 2**20),
    )
    assert str(refusal).startswith(
        f"not enough free space to index the embedded Qdrant store in {tmp_path}: "
        "29,821,501 bytes (28.4 MiB) free, 32,264,683 bytes (30.8 MiB) needed"
    )
    assert optimizer_refusal(Exception("Service runtime error: bad request"), tmp_path) is None

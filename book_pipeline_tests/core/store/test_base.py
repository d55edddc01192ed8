import json
import socket
import time
from pathlib import Path

import pytest
from qdrant_client import models

from book_pipeline.core.books.parsing import parse_book_text
from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import book_point_id
from book_pipeline.core.store.errors import (
    CollectionMismatchError,
    StoreLockedError,
    StoreUnreachableError,
)
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server_conversions import vector_params
from book_pipeline_tests.support.data_folder import hold_store_open
from book_pipeline_tests.support.embedders import unit_vectors

BOOKS = parse_book_text(
    "1 ::: Emma (1815) ::: Jane Austen ::: A matchmaker errs.\n"
    "2 ::: Dracula (1897) ::: Bram Stoker ::: A count moves to London.\n",
    "classics.txt",
)


def test_point_ids_are_stable_and_distinct() -> None:
    assert book_point_id("a.txt", 1) == book_point_id("a.txt", 1)
    assert (
        len({book_point_id("a.txt", 1), book_point_id("a.txt", 2), book_point_id("b.txt", 1)}) == 3
    )


def test_upsert_twice_keeps_one_point_per_book(tmp_path: Path) -> None:
    with open_vector_store("books", tmp_path / "qdrant") as store:
        store.ensure_collection(4, "model-a")
        store.upsert_books(BOOKS, unit_vectors(2, 4), "sha")
        store.upsert_books(BOOKS, unit_vectors(2, 4), "sha")
        assert store.count() == 2
        assert store.collection_model() == (4, "model-a")


def test_reopening_checks_dimension_and_model(tmp_path: Path) -> None:
    with open_vector_store("books", tmp_path / "qdrant") as store:
        store.ensure_collection(4, "model-a")
    with open_vector_store("books", tmp_path / "qdrant") as store:
        store.ensure_collection(4, "model-a")
        with pytest.raises(CollectionMismatchError, match="holds 4-dimensional vectors"):
            store.ensure_collection(8, "model-a")
        with pytest.raises(CollectionMismatchError, match="was built with 'model-a'"):
            store.ensure_collection(4, "model-b")


def test_count_of_missing_collection_is_zero(tmp_path: Path) -> None:
    with open_vector_store("nothing_here", tmp_path / "qdrant") as store:
        assert store.count() == 0


def test_locked_store_is_waited_for_then_opened(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    path.mkdir()
    holder = hold_store_open(path, seconds=1.5)
    messages: list[str] = []
    started = time.monotonic()
    with open_vector_store("books", path, lock_wait_seconds=30, on_wait=messages.append) as store:
        assert store.count() == 0
    assert time.monotonic() - started >= 0.5
    assert len(messages) == 1 and "in use by another process" in messages[0]
    holder.wait(timeout=30)


def test_locked_store_fails_clearly_after_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    path.mkdir()
    holder = hold_store_open(path, seconds=30)
    try:
        with (
            pytest.raises(StoreLockedError, match=r"still in use by another process after 1 s"),
            open_vector_store("books", path, lock_wait_seconds=1),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_unreachable_server_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}"
    with (
        pytest.raises(StoreUnreachableError, match=rf"Qdrant server at {url} is unreachable"),
        open_vector_store("books", tmp_path / "unused", url=url, api_key="secret-key"),
    ):
        pass


def test_embedded_store_keeps_vector_settings_and_ignores_cluster_ones(tmp_path: Path) -> None:
    settings = CollectionSettings(
        shard_number=6,
        replication_factor=2,
        write_consistency_factor=2,
        on_disk_vectors=True,
        on_disk_payload=True,
        hnsw_m=32,
        hnsw_ef_construct=200,
        int8_quantization=True,
    )
    with open_vector_store("books", tmp_path / "qdrant", settings=settings) as store:
        store.ensure_collection(4, "model-a")
        store.upsert_books(BOOKS, unit_vectors(2, 4), "sha")
        [nearest] = store.search(unit_vectors(1, 4)[0].tolist(), limit=1)
    # Edge keeps the shard's layout beside its segments.
    config = json.loads((tmp_path / "qdrant" / "books" / "edge_config.json").read_text())

    # What the server would get for the vectors is kept in the shard's config...
    vectors = config["vectors"][""]
    assert vectors["on_disk"] is True
    assert (config["hnsw_config"]["m"], config["hnsw_config"]["ef_construct"]) == (32, 200)
    assert config["quantization_config"] == {
        "scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}
    }
    # ...the cluster layout is accepted and dropped: one process has no shards or replicas.
    assert not {"shard_number", "replication_factor", "write_consistency_factor"} & set(config)
    assert config["on_disk_payload"] is True
    assert nearest.id in {book_point_id("classics.txt", 1), book_point_id("classics.txt", 2)}


def test_default_settings_send_only_size_and_distance() -> None:
    assert vector_params(CollectionSettings(), 384) == models.VectorParams(
        size=384, distance=models.Distance.COSINE
    )

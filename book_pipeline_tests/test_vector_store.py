import socket
import time
from pathlib import Path

import pytest
from qdrant_client import models

from book_pipeline import vector_store
from book_pipeline.parsing import parse_book_text
from book_pipeline.vector_store import (
    CollectionMismatchError,
    CollectionSettings,
    StoreLockedError,
    StoreUnreachableError,
    book_point_id,
    open_vector_store,
)
from book_pipeline_tests.conftest import hold_store_open, unit_vectors

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
        params = store.client.get_collection("books").config.params
        [nearest] = store.client.query_points("books", query=unit_vectors(1, 4)[0], limit=1).points

    # What the server would get for the vectors is kept in the collection's config...
    assert isinstance(params.vectors, models.VectorParams)
    assert params.vectors.on_disk is True
    assert params.vectors.hnsw_config is not None
    assert (params.vectors.hnsw_config.m, params.vectors.hnsw_config.ef_construct) == (32, 200)
    assert params.vectors.quantization_config == models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True
        )
    )
    # ...the cluster layout is accepted and dropped: one process has no shards or replicas.
    assert params.shard_number is None and params.replication_factor is None
    assert params.write_consistency_factor is None and params.on_disk_payload is None
    assert nearest.id in {book_point_id("classics.txt", 1), book_point_id("classics.txt", 2)}


def test_default_settings_send_only_size_and_distance() -> None:
    assert CollectionSettings().vector_params(384) == models.VectorParams(
        size=384, distance=models.Distance.COSINE
    )


def test_embedded_store_past_its_limit_advises_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vector_store, "EMBEDDED_STORE_POINT_LIMIT", 1)
    with open_vector_store("books", tmp_path / "qdrant") as store:
        store.ensure_collection(4, "model-a")
        store.upsert_books(BOOKS[:1], unit_vectors(1, 4), "sha")
        assert store.size_warning() is None
        store.upsert_books(BOOKS, unit_vectors(2, 4), "sha")
        warning = store.size_warning()
        server = vector_store.BookVectorStore(store.client, "books", is_server=True)
        assert server.size_warning(10**9) is None

    assert warning is not None
    assert "holds 2 points, more than the 1 it suits" in warning
    assert "migrate-store --to-url" in warning and "QDRANT_URL" in warning

"""The Qdrant server code paths (QDRANT_URL), against the REST stub of `qdrant_rest_stub`.

Not a real Qdrant server: none is installable here. The real client sends real requests; the
stub checks them against qdrant-client's REST models and answers from its local mode. What a
server does with shards, replicas and indexes is not tested here.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from book_pipeline import cli
from book_pipeline.core.settings import DEFAULT_COLLECTION, CollectionSettings
from book_pipeline.core.store.errors import (
    StoreRefusedError,
    StoreUnreachableError,
)
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server_opening import open_server_store
from book_pipeline.core.store.server_version import ServerTooOldError, required_version
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import SampleLoad, fetch_data_job, fetch_data_run_config
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

API_KEY = "planted-qdrant-key-0123"
LAYOUT = {
    "shard_number": 6,
    "replication_factor": 2,
    "write_consistency_factor": 2,
    "on_disk_vectors": True,
    "on_disk_payload": True,
    "hnsw_m": 32,
    "hnsw_ef_construct": 200,
    "int8_quantization": True,
}


@pytest.fixture
def server_env(sample_load: SampleLoad, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The pipeline's configured embedded store is the sample load's; no developer settings."""
    for name in ("QDRANT_URL", "QDRANT_API_KEY", "BOOK_PIPELINE_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    for name in CollectionSettings.__dataclass_fields__:
        monkeypatch.delenv(f"QDRANT_{name.upper()}", raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(sample_load.data_dir))
    monkeypatch.setenv("BOOK_PIPELINE_COLLECTION", DEFAULT_COLLECTION)
    return monkeypatch


def server_run_config(books_dir: Path, data_dir: Path, url: str) -> dict[str, Any]:
    run_config = fetch_data_run_config(books_dir, data_dir)
    run_config["resources"]["qdrant"]["config"].update(url=url, api_key=API_KEY, layout=LAYOUT)
    return run_config


def test_fetch_data_against_a_server(
    books_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, second = write_synthetic_books(books_dir, files=2, books_per_file=3)
    state = QdrantStubState(api_key=API_KEY)

    with qdrant_rest_stub(state) as url, dg.instance_for_test() as instance:
        config = server_run_config(books_dir, data_dir, url)
        loaded = fetch_data_job().execute_in_process(run_config=config, instance=instance)
        assert state.local.count(DEFAULT_COLLECTION).count == 6
        second.unlink()
        reloaded = fetch_data_job().execute_in_process(run_config=config, instance=instance)
        remaining = state.local.count(DEFAULT_COLLECTION).count
        event = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))

    assert loaded.success and reloaded.success
    assert remaining == 3  # the deleted file's books, deleted by a filter on the server
    [create] = state.bodies("PUT", "/collections/books")
    assert {key: create[key] for key in LAYOUT if key in create} == {
        "shard_number": 6,
        "replication_factor": 2,
        "write_consistency_factor": 2,
        "on_disk_payload": True,
    }
    assert create["vectors"]["on_disk"] is True
    assert create["vectors"]["hnsw_config"] == {"m": 32, "ef_construct": 200}
    assert create["vectors"]["quantization_config"] == {
        "scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}
    }
    assert create["metadata"]["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8"
    assert create["sparse_vectors"] == {
        "bm25_ascii": {"modifier": "idf"},
        "title_author_trigrams": {},
    }
    indexes = state.bodies("PUT", "/collections/books/index")
    assert {(body["field_name"], body["field_schema"]) for body in indexes} == {
        ("author", "keyword"),
        ("year", "integer"),
        ("source_file", "keyword"),
        ("pipeline", "keyword"),
    }
    assert set(state.api_key_headers) == {API_KEY}
    # The retrieval check searched the server too.
    assert state.bodies("POST", "/collections/books/points/query")
    assert event is not None and event.asset_materialization is not None
    assert "qdrant_store_warning" not in event.asset_materialization.metadata
    # A server connection locks nothing: the embedded store's folder was never even created.
    assert not (data_dir / "qdrant-edge").exists()


def test_migrate_store_to_a_server_then_search_it(
    server_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server_env.setenv("MY_QDRANT_KEY", API_KEY)
    server_env.setenv("QDRANT_SHARD_NUMBER", "4")
    state = QdrantStubState(api_key=API_KEY)

    with qdrant_rest_stub(state) as url:
        migrate = ["migrate-store", "--to-url", url, "--to-api-key-env", "MY_QDRANT_KEY"]
        assert cli.main([*migrate, "--batch-size", "10"]) == cli.EXIT_OK
        assert cli.main(migrate) == cli.EXIT_OK  # again: nothing doubles
        server_env.setenv("QDRANT_URL", url)
        server_env.setenv("QDRANT_API_KEY", API_KEY)
        assert cli.main(["search", "a creepy mansion with ghosts", "--limit", "3"]) == 0
        points = state.local.count(DEFAULT_COLLECTION).count
        migrated_and_searched = capsys.readouterr()
        assert cli.main(["info", "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        # server -> Edge: a second embedded copy, beside the sample load's
        back = ["migrate-store", "--to-path", str(tmp_path / "back"), "--to-collection", "back"]
        assert cli.main(back) == cli.EXIT_OK

    assert info == {
        "engine": "qdrant-server",
        "location": url,
        "collection": DEFAULT_COLLECTION,
        "points": 45,
        # Loaded by the sample load, whose data folder this is: its id is in their payloads.
        "other_points": 0,
        "model": "all-MiniLM-L6-v2-onnx-int8",
        "dimension": 384,
        # A server's disk is its own: only the embedded store's are shown.
        "size_on_disk": None,
        "free_space": None,
        # The REST stand-in creates the collection without the sparse vector it was asked for
        # (the request is checked below), as a collection of an earlier release is: dense
        # only. The server path's keyword and hybrid searches run against qdrant-client's
        # local mode instead (test_search.py).
        "search_modes": ["dense"],
        "versions": [
            {
                "version": 1,
                "collection": DEFAULT_COLLECTION,
                "model": "all-MiniLM-L6-v2-onnx-int8",
                "dimension": 384,
                "points": 45,
                "state": "current",
                "rebuild": None,
            }
        ],
    }
    with open_vector_store("back", tmp_path / "back") as copy:
        assert copy.count() == 45 and copy.engine == "qdrant-edge"
    captured = migrated_and_searched
    assert points == 45
    assert captured.out.count(f"copied 45 points; collection 'books' at {url} holds 45") == 2
    assert f"export QDRANT_URL={url}" in captured.out
    assert "The Turn of the Screw" in captured.out
    assert API_KEY not in captured.out + captured.err
    [create] = state.bodies("PUT", "/collections/books")
    assert create["shard_number"] == 4
    # 45 points in batches of 10, then in one batch of 256
    assert [len(body["points"]) for body in state.bodies("PUT", "/collections/books/points")] == [
        10,
        10,
        10,
        10,
        5,
        45,
    ]


def test_a_server_refusing_the_key_is_reported_without_it(
    server_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server_env.setenv("QDRANT_API_KEY", "wrong-key-456")
    state = QdrantStubState(api_key=API_KEY)

    with qdrant_rest_stub(state) as url:
        code = cli.main(["migrate-store", "--to-url", url])

    captured = capsys.readouterr()
    assert code == cli.EXIT_REFUSED
    assert f"the Qdrant server at {url} refused" in captured.err and "401" in captured.err
    assert "wrong-key-456" not in captured.out + captured.err
    assert state.api_key_headers == ["wrong-key-456"]  # the default variable was used


def test_the_servers_errors_become_the_stores_own_naming_it() -> None:
    """Callers catch StoreRefusedError and StoreUnreachableError, never qdrant-client's types."""
    state = QdrantStubState(api_key=API_KEY)
    with qdrant_rest_stub(state) as url:
        with pytest.raises(StoreRefusedError, match=f"the Qdrant server at {url} refused: .*401"):
            open_server_store(DEFAULT_COLLECTION, url, "wrong-key", None)
        store = open_server_store(DEFAULT_COLLECTION, url, API_KEY, None)
        store.ensure_collection(4, "model-a")
        with pytest.raises(StoreRefusedError, match=f"the Qdrant server at {url} refused"):
            store.search([1.0, 0.0], 1)  # a 2-d query for a 4-d collection
    # The server is gone: a request of the open store names it and says a retry is safe.
    with pytest.raises(StoreUnreachableError, match=f"lost the Qdrant server at {url} .*safe"):
        store.count()
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1.15.4", "1.9.0", "dev", ""])
def test_a_server_older_than_the_collection_metadata_is_refused_by_its_version(
    version: str,
    books_dir: Path,
    data_dir: Path,
    server_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before Qdrant 1.16 a server drops the collection's metadata, the stamp: refused when the
    pipeline connects, naming the version it needs; nothing is written to it."""
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    state = QdrantStubState(api_key=API_KEY, version=version)

    with qdrant_rest_stub(state) as url, dg.instance_for_test() as instance:
        with pytest.raises(ServerTooOldError) as refused:
            open_server_store(DEFAULT_COLLECTION, url, API_KEY, None)
        run = fetch_data_job().execute_in_process(
            run_config=server_run_config(books_dir, data_dir, url),
            instance=instance,
            raise_on_error=False,
        )
        server_env.setenv("QDRANT_URL", url)
        server_env.setenv("QDRANT_API_KEY", API_KEY)
        capsys.readouterr()
        assert cli.main(["info"]) == cli.EXIT_REFUSED

    needed = f"book_pipeline needs Qdrant {required_version()} or later"
    assert needed in str(refused.value) and url in str(refused.value)
    assert needed in capsys.readouterr().err
    assert not run.success
    [failure] = [event for event in run.all_events if event.is_step_failure]
    assert failure.step_key == "book_embeddings.list_book_description_files"
    assert needed in str(failure.step_failure_data)
    assert {method for method, _, _ in state.requests} == {"GET"}


def test_a_server_of_the_version_needed_is_used(books_dir: Path, data_dir: Path) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    state = QdrantStubState(api_key=API_KEY, version=required_version() + ".0")

    with qdrant_rest_stub(state) as url, dg.instance_for_test() as instance:
        run = fetch_data_job().execute_in_process(
            run_config=server_run_config(books_dir, data_dir, url), instance=instance
        )
        points = state.local.count(DEFAULT_COLLECTION).count

    assert run.success and points == 2

"""Copying the loaded sample collection to another store: same points, no re-embedding.

The targets are embedded Qdrant Edge stores; `--to-url` runs the same `copy_collection` with a
server client (test_qdrant_server.py runs it against the REST stand-in), and a foreign server
collection is refused here through the same stand-in.
"""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from book_pipeline import cli
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.search import search_books
from book_pipeline.core.settings import DEFAULT_COLLECTION, CollectionSettings
from book_pipeline.core.store.base import (
    BookVectorStore,
    StoredPoint,
)
from book_pipeline.core.store.copying import VECTOR_TOLERANCE, copy_collection
from book_pipeline.core.store.errors import (
    CollectionMismatchError,
    MigrationError,
)
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline_tests.support.embedders import CountingEmbedder
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import SampleLoad


def all_points(store: BookVectorStore) -> dict[str, StoredPoint]:
    points, offset = store.scroll(10_000, with_vectors=True)
    assert offset is None
    return {str(point.id): point for point in points}


def edge_config_of(shard: Path) -> dict:
    """The layout the Edge shard was created with, as it keeps it beside its segments."""
    return json.loads((shard / "edge_config.json").read_text())


@pytest.fixture
def source(sample_load: SampleLoad) -> Iterator[BookVectorStore]:
    with open_vector_store(DEFAULT_COLLECTION, sample_load.data_dir / "qdrant-edge") as store:
        yield store


@pytest.fixture
def migrate_env(sample_load: SampleLoad, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The CLI copies the pipeline's configured store: the sample load's."""
    for name in ("QDRANT_URL", "QDRANT_API_KEY", "QDRANT_ON_DISK_VECTORS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(sample_load.data_dir))
    monkeypatch.setenv("BOOK_PIPELINE_COLLECTION", DEFAULT_COLLECTION)
    return monkeypatch


def test_copy_has_the_same_ids_payloads_vectors_and_model(
    source: BookVectorStore, tmp_path: Path
) -> None:
    with open_vector_store("books_copy", tmp_path / "copy") as target:
        copied = copy_collection(source, target, batch_size=7)  # 45 points: 7 batches
        copy, original = all_points(target), all_points(source)
        assert target.collection_model() == source.collection_model()
        # The same books: the ledger's record of the source counts for the copy.
        assert target.stamp() == source.stamp()

    assert copied == len(original) == 45
    assert copy.keys() == original.keys()
    for point_id, point in original.items():
        assert copy[point_id].payload == point.payload
        np.testing.assert_allclose(
            copy[point_id].vector, point.vector, rtol=0, atol=VECTOR_TOLERANCE
        )


def test_running_it_again_leaves_the_same_points(source: BookVectorStore, tmp_path: Path) -> None:
    with open_vector_store("books", tmp_path / "copy") as target:
        first = copy_collection(source, target)
        after_first = all_points(target)
        second = copy_collection(source, target)
        after_second = all_points(target)

    assert first == second == 45
    assert after_second.keys() == after_first.keys()
    assert all(after_second[key].payload == after_first[key].payload for key in after_first)


def test_the_copy_is_searched_without_embedding_the_books_again(
    source: BookVectorStore, tmp_path: Path
) -> None:
    embedder = CountingEmbedder()
    with open_vector_store("books", tmp_path / "copy") as target:
        copy_collection(source, target)
        hits = search_books(target, embedder, "a creepy mansion with ghosts", limit=3)
    original_hits = search_books(source, shared_local_embedder(), "a creepy mansion with ghosts", 3)

    assert embedder.calls == [["a creepy mansion with ghosts"]]  # the query, nothing else
    assert "The Turn of the Screw" in [hit.title for hit in hits]
    assert [hit.title for hit in hits] == [hit.title for hit in original_hits]


@pytest.mark.parametrize(
    ("dimension", "model", "message"),
    [(8, "all-MiniLM-L6-v2-onnx-int8", "holds 8-dimensional"), (384, "other", "built with")],
)
def test_a_target_collection_of_another_model_is_refused(
    source: BookVectorStore, tmp_path: Path, dimension: int, model: str, message: str
) -> None:
    with open_vector_store("books", tmp_path / "copy") as target:
        target.ensure_collection(dimension, model)
        with pytest.raises(CollectionMismatchError, match=message):
            copy_collection(source, target)
        assert target.count() == 0


def test_the_target_gets_the_configured_layout(source: BookVectorStore, tmp_path: Path) -> None:
    settings = CollectionSettings(on_disk_vectors=True, int8_quantization=True, shard_number=4)
    with open_vector_store("books", tmp_path / "copy", settings=settings) as target:
        copy_collection(source, target)
    config = edge_config_of(tmp_path / "copy" / "books")

    assert config["vectors"][""]["on_disk"] is True and config["quantization_config"] is not None


def test_a_missing_or_foreign_source_is_refused(tmp_path: Path) -> None:
    state = QdrantStubState()
    with (
        qdrant_rest_stub(state) as url,
        open_vector_store("books", tmp_path / "unused", url=url) as source,
        open_vector_store("books", tmp_path / "copy") as target,
    ):
        with pytest.raises(MigrationError, match="nothing to copy"):
            copy_collection(source, target)
        state.local.create_collection(
            "books", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        with pytest.raises(CollectionMismatchError, match="not made by book_pipeline"):
            copy_collection(source, target)
        with pytest.raises(MigrationError, match="batch size"):
            copy_collection(source, target, batch_size=0)


def test_cli_copies_to_a_path_and_prints_the_counts(
    migrate_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate_env.setenv("QDRANT_ON_DISK_VECTORS", "true")
    target = tmp_path / "backup"
    arguments = ["migrate-store", "--to-path", str(target), "--to-collection", "books_backup"]

    assert cli.main(arguments) == cli.EXIT_OK
    assert cli.main(arguments) == cli.EXIT_OK  # again: the same 45 points

    out = capsys.readouterr().out
    assert "copying collection 'books' (45 points)" in out
    assert out.count("copied 45 points; collection 'books_backup'") == 2
    assert "holds 45 points" in out
    with open_vector_store("books_backup", target) as copy:
        assert copy.count() == 45
    assert edge_config_of(target / "books_backup")["vectors"][""]["on_disk"] is True


def test_cli_refuses_to_copy_a_store_onto_itself_or_from_nowhere(
    migrate_env: pytest.MonkeyPatch,
    sample_load: SampleLoad,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    same = ["migrate-store", "--to-path", str(sample_load.data_dir / "qdrant-edge")]
    assert cli.main(same) == cli.EXIT_REFUSED
    assert "is the store being copied" in capsys.readouterr().err

    nowhere = ["migrate-store", "--from-path", str(tmp_path / "none"), "--to-path", str(tmp_path)]
    assert cli.main(nowhere) == cli.EXIT_REFUSED
    assert "no embedded Qdrant store at" in capsys.readouterr().err


def test_cli_takes_the_name_of_the_key_variable_never_the_key(
    migrate_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key_like = "sk-qdrant/0123456789+abc=="
    url = ["--to-url", "http://127.0.0.1:9"]
    assert cli.main(["migrate-store", *url, "--to-api-key-env", key_like]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "not the key itself" in err and key_like not in err

    migrate_env.delenv("MY_QDRANT_KEY", raising=False)
    assert cli.main(["migrate-store", *url, "--to-api-key-env", "MY_QDRANT_KEY"]) == 2
    assert "MY_QDRANT_KEY is not set" in capsys.readouterr().err


def test_cli_names_an_unreachable_server_never_its_key(
    migrate_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}"
    migrate_env.setenv("MY_QDRANT_KEY", "planted-qdrant-key-0123")

    code = cli.main(["migrate-store", "--to-url", url, "--to-api-key-env", "MY_QDRANT_KEY"])

    captured = capsys.readouterr()
    assert code == cli.EXIT_REFUSED
    assert f"Qdrant server at {url} is unreachable" in captured.err
    assert "planted-qdrant-key-0123" not in captured.out + captured.err

"""The embedded Qdrant Edge store's own duties: its folder, its bad states, and the shards of the
previous release gaining keyword vectors. All on the real engine."""

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import qdrant_edge as edge

from book_pipeline import cli
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import BookRecord, parse_book_file
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.search import SearchRefusedError, search_books
from book_pipeline.core.store.base import (
    CollectionStamp,
    book_payload,
    book_point_id,
)
from book_pipeline.core.store.edge_folder import MANIFEST_NAME
from book_pipeline.core.store.errors import (
    CollectionMismatchError,
    StoreDamagedError,
)
from book_pipeline.core.store.opening import open_vector_store, read_collection_stamp
from book_pipeline_tests.support.data_folder import folder_fingerprint, hold_store_open
from book_pipeline_tests.support.embedders import CountingEmbedder
from book_pipeline_tests.support.legacy_store import LEGACY_BOOKS, LEGACY_VECTORS

MODEL = "model-a"


def test_the_embedded_path_never_imports_qdrant_client(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from book_pipeline.core.search import search_books\n"
        "from book_pipeline.core.store.base import BookFilter\n"
        "from book_pipeline.core.store.opening import open_vector_store\n"
        "with open_vector_store('books', Path(sys.argv[1]), legacy_path=Path(sys.argv[2])) as s:\n"
        "    s.ensure_collection(2, 'm')\n"
        "    s.search([1.0, 0.0], 1, BookFilter(author='x'))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('qdrant_client', 'dagster'))))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "edge"), str(tmp_path / "qdrant")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert output.strip() == "[]"


def test_the_collection_of_another_model_is_named_by_its_folder(tmp_path: Path) -> None:
    with open_vector_store("books", tmp_path / "edge") as store:
        store.ensure_collection(8, MODEL)
    with (
        open_vector_store("books", tmp_path / "edge") as store,
        pytest.raises(CollectionMismatchError, match=str(tmp_path / "edge" / "books")),
    ):
        store.ensure_collection(384, MODEL)


def test_a_shard_without_its_manifest_is_reported_and_left_alone(tmp_path: Path) -> None:
    with open_vector_store("books", tmp_path / "edge") as store:
        store.ensure_collection(8, MODEL)
        store.upsert_books(LEGACY_BOOKS[:3], LEGACY_VECTORS[:3], "sha")
    shard = tmp_path / "edge" / "books"
    (shard / MANIFEST_NAME).unlink()
    before = folder_fingerprint(shard)

    for _ in range(2):  # and again: nothing was re-created in between
        with (
            pytest.raises(StoreDamagedError, match=rf"{shard} is not a complete") as error,
            open_vector_store("books", tmp_path / "edge"),
        ):
            pass
        assert "left as it is" in str(error.value)
    assert folder_fingerprint(shard) == before


def test_a_damaged_shard_is_reported_and_never_recreated_empty(tmp_path: Path) -> None:
    with open_vector_store("books", tmp_path / "edge") as store:
        store.ensure_collection(8, MODEL)
        store.upsert_books(LEGACY_BOOKS[:3], LEGACY_VECTORS[:3], "sha")
    shard = tmp_path / "edge" / "books"
    (shard / "edge_config.json").write_text("{ truncated")
    before = folder_fingerprint(shard)

    with (
        pytest.raises(StoreDamagedError, match=rf"shard {shard} cannot be loaded"),
        open_vector_store("books", tmp_path / "edge"),
    ):
        pass
    assert folder_fingerprint(shard) == before


def test_a_creation_that_died_leaves_no_collection_behind(tmp_path: Path) -> None:
    leftover = tmp_path / "edge" / ".books.partial-dead"
    leftover.mkdir(parents=True)
    (leftover / "half-written").write_text("x")
    with open_vector_store("books", tmp_path / "edge") as store:
        assert not store.collection_exists()
        store.ensure_collection(8, MODEL)
    assert not leftover.exists()
    manifest = json.loads((tmp_path / "edge" / "books" / MANIFEST_NAME).read_text())
    assert manifest == {
        "embedding_model": MODEL,
        "dimension": 8,
        "generation": manifest["generation"],
        "load_sequence": 0,
    }
    assert len(manifest["generation"]) == 32


def test_the_stamp_is_read_while_another_process_holds_the_store(tmp_path: Path) -> None:
    """What the sensor reads while a load runs: the manifest, without the lock."""
    with open_vector_store("books", tmp_path / "edge") as store:
        store.ensure_collection(8, MODEL)
        generation = store.record_load(7)
    holder = hold_store_open(tmp_path / "edge", 30)
    try:
        started = time.perf_counter()
        stamp = read_collection_stamp("books", tmp_path / "edge")
        elapsed = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    assert stamp == CollectionStamp(generation, 7)
    assert elapsed < 0.1
    assert read_collection_stamp("other", tmp_path / "edge") is None


def test_a_manifest_replaced_half_way_is_never_seen(tmp_path: Path) -> None:
    """The manifest is renamed into place: a leftover temporary file changes nothing."""
    with open_vector_store("books", tmp_path / "edge") as store:
        store.ensure_collection(8, MODEL)
        generation = store.record_load(1)
    (tmp_path / "edge" / "books" / f".{MANIFEST_NAME}.tmp").write_text('{"dimens')
    with open_vector_store("books", tmp_path / "edge") as store:
        assert store.stamp() == CollectionStamp(generation, 1)
        assert store.record_load(2) == generation


def test_info_on_an_empty_store_and_in_words(
    data_dir: Path, edge_env: None, capsys: pytest.CaptureFixture[str]
) -> None:

    assert cli.main(["info"]) == cli.EXIT_OK

    out = capsys.readouterr().out
    assert "engine:       qdrant-edge" in out and "points:       0" in out
    assert "model:        -" in out and "search_modes: -" in out
    assert re.search(r"^size_on_disk: [\d,]+ bytes \([\d.]+ [MG]iB\)$", out, re.MULTILINE)
    assert re.search(r"^free_space:   [\d,]+ bytes \([\d.]+ [MG]iB\)$", out, re.MULTILINE)


PREVIOUS_MANIFEST_EXTRAS = {"generation": "gen-0001", "load_sequence": 7}


def write_previous_release_shard(folder: Path, books: Sequence[BookRecord]) -> None:
    """What the previous release's load left: a dense-only shard (the unnamed vector, no sparse
    one), its payload indexes and its manifest, here with keys this release does not know."""
    embedder = shared_local_embedder()
    shard = edge.EdgeShard.create(
        str(folder / "books"),
        edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=embedder.dimension, distance=edge.Distance.Cosine)
        ),
    )
    for field in ("author", "source_file"):
        shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword))
    shard.update(edge.UpdateOperation.create_field_index("year", edge.PayloadSchemaType.Integer))
    vectors = embedder.embed([book.embedding_text for book in books])
    shard.update(
        edge.UpdateOperation.upsert_points(
            [
                edge.Point(
                    book_point_id(book.source_file, book.index),
                    vector.tolist(),
                    book_payload(book, "sha"),
                )
                for book, vector in zip(books, vectors, strict=True)
            ]
        )
    )
    shard.flush()
    shard.close()
    manifest = {
        "embedding_model": embedder.model_name,
        "dimension": embedder.dimension,
        **PREVIOUS_MANIFEST_EXTRAS,
    }
    (folder / "books" / MANIFEST_NAME).write_text(json.dumps(manifest))


SAMPLE_BOOKS = [
    book for path in sorted(SAMPLE_BOOKS_DIR.glob("*.txt")) for book in parse_book_file(path).books
]


def test_a_previous_release_shard_gains_keyword_vectors_without_embedding(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    write_previous_release_shard(folder, SAMPLE_BOOKS)
    manifest_before = json.loads((folder / "books" / MANIFEST_NAME).read_text())
    embedder = CountingEmbedder()
    messages: list[str] = []

    with open_vector_store("books", folder, on_wait=messages.append) as store:
        count = store.count()
        modes = store.search_modes()
        [by_author] = search_books(store, embedder, "Bram Stoker", 1, mode="keyword")
        calls_by_the_upgrade = list(embedder.calls)
        [hybrid] = search_books(store, embedder, "Gaston Leroux", 1, mode="hybrid")
        copies = {point.id: point for point in store.scroll(100, with_vectors=True)[0]}
    with open_vector_store("books", folder, on_wait=messages.append) as store:
        assert store.count() == count  # once only: the second open had nothing to do

    assert calls_by_the_upgrade == []
    assert embedder.calls == [["Gaston Leroux"]]  # the hybrid query itself
    assert count == len(SAMPLE_BOOKS)
    assert modes == ("hybrid", "dense", "keyword")
    assert by_author.title == "Dracula" and hybrid.title == "The Phantom of the Opera"
    assert json.loads((folder / "books" / MANIFEST_NAME).read_text()) == manifest_before
    assert len(messages) == 2 and "adding accent-folded BM25 keyword vectors" in messages[0]
    assert (
        f"added keyword vectors to {len(SAMPLE_BOOKS)} points in {folder / 'books'}"
        in (messages[1])
    )
    assert sorted(path.name for path in folder.iterdir()) == [".lock", "books"]
    dracula = copies[book_point_id("gothic_horror.txt", 501)]
    assert dracula.keyword_vector is not None and dracula.vector is not None


def test_a_shard_that_cannot_be_upgraded_is_left_as_it_was_and_answers_dense(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "edge"
    write_previous_release_shard(folder, SAMPLE_BOOKS)
    # A point that cannot become a book (no author in its payload): no keyword vector for it.
    shard = edge.EdgeShard.load(str(folder / "books"))
    shard.update(
        edge.UpdateOperation.upsert_points(
            [edge.Point(book_point_id("x.txt", 1), [1.0] * 384, {"title": "No author"})]
        )
    )
    shard.flush()
    shard.close()
    messages: list[str] = []

    with open_vector_store("books", folder, on_wait=messages.append) as store:
        modes = store.search_modes()
        count = store.count()
        dense = search_books(store, shared_local_embedder(), "a vampire count", 1)
        with pytest.raises(SearchRefusedError, match="holds no keyword vectors yet") as refused:
            search_books(store, shared_local_embedder(), "Stoker", 1, mode="keyword")

    assert modes == ("dense",) and count == len(SAMPLE_BOOKS) + 1
    assert dense[0].title == "Dracula"  # the default mode falls back to dense
    assert str(folder / "books") in str(refused.value)
    assert f"could not add keyword vectors to {folder / 'books'}" in messages[1]
    assert "it is left as it was and answers dense searches only" in messages[1]
    assert sorted(path.name for path in folder.iterdir()) == [".lock", "books"]


def test_a_swap_that_died_between_its_renames_puts_the_old_shard_back(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    with open_vector_store("books", folder) as store:
        store.ensure_collection(8, MODEL)
        store.upsert_books(LEGACY_BOOKS[:3], LEGACY_VECTORS[:3], "sha")
    (folder / ".books.previous-dead").mkdir()
    (folder / "books").rename(folder / ".books.previous-dead" / "books")

    with open_vector_store("books", folder) as store:
        assert store.count() == 3

    assert sorted(path.name for path in folder.iterdir()) == [".lock", "books"]

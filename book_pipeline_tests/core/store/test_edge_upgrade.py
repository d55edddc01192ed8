"""An issue-18 collection (unfolded BM25 "bm25", no title-and-author trigrams) upgraded from its
stored payloads: nothing embedded, the same count, the new modes answering; the old shard left
whole when the upgrade cannot finish."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as edge
from qdrant_client import QdrantClient, models

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.search import SearchRefusedError, search_books
from book_pipeline.core.store.base import book_payload, book_point_id
from book_pipeline.core.store.copying import copy_collection
from book_pipeline.core.store.edge_folder import EDGE_CONFIG_NAME, MANIFEST_NAME
from book_pipeline.core.store.keyword_vectors import KEYWORD_VECTOR_NAME
from book_pipeline.core.store.name_vectors import NAME_VECTOR_NAME
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server import LOCAL_MODE_ENGINE, QdrantClientStore
from book_pipeline_tests.support.earlier_shards import ISSUE_18_KEYWORD_VECTOR, write_issue_18_shard
from book_pipeline_tests.support.embedders import CountingEmbedder

BOOKS = [
    book for path in sorted(SAMPLE_BOOKS_DIR.glob("*.txt")) for book in parse_book_file(path).books
]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return shared_local_embedder().embed([book.embedding_text for book in BOOKS])


def test_an_issue_18_shard_gains_folded_and_trigram_vectors_without_embedding(
    tmp_path: Path, vectors: np.ndarray
) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    embedder = CountingEmbedder()
    write_issue_18_shard(folder / "books", BOOKS, vectors, embedder.model_name)
    manifest_before = json.loads((folder / "books" / MANIFEST_NAME).read_text())
    messages: list[str] = []

    with open_vector_store("books", folder, on_wait=messages.append) as store:
        count, modes = store.count(), store.search_modes()
        calls_by_the_upgrade = list(embedder.calls)
        [bronte] = search_books(store, embedder, "bronte", 1, mode="keyword")
        [misspelled] = search_books(store, embedder, "agatha cristie", 1)

    layout = json.loads((folder / "books" / EDGE_CONFIG_NAME).read_text())
    assert calls_by_the_upgrade == []
    assert count == len(BOOKS) and modes == ("hybrid", "dense", "keyword")
    assert bronte.author == "Charlotte Brontë"  # the unfolded "bm25" could not find it
    assert misspelled.title == "The Mysterious Affair at Styles"
    assert set(layout["sparse_vectors"]) == {KEYWORD_VECTOR_NAME, NAME_VECTOR_NAME}
    assert json.loads((folder / "books" / MANIFEST_NAME).read_text()) == manifest_before
    assert "accent-folded BM25" in messages[0]
    assert f"added keyword vectors to {len(BOOKS)} points" in messages[1]
    assert sorted(path.name for path in folder.iterdir()) == [".lock", "books"]


def test_an_issue_18_shard_that_cannot_be_upgraded_is_left_as_it_was(
    tmp_path: Path, vectors: np.ndarray
) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    write_issue_18_shard(folder / "books", BOOKS, vectors, shared_local_embedder().model_name)
    # A point that cannot become a book (no author in its payload) stops the copy half-way.
    shard = edge.EdgeShard.load(str(folder / "books"))
    point = edge.Point(book_point_id("x.txt", 1), [1.0] * vectors.shape[1], {"title": "Nobody"})
    shard.update(edge.UpdateOperation.upsert_points([point]))
    shard.flush()
    shard.close()
    manifest_before = (folder / "books" / MANIFEST_NAME).read_text()
    messages: list[str] = []

    with open_vector_store("books", folder, on_wait=messages.append) as store:
        modes, count = store.search_modes(), store.count()
        [dense] = search_books(store, shared_local_embedder(), "a vampire count", 1)
    layout = json.loads((folder / "books" / EDGE_CONFIG_NAME).read_text())

    assert modes == ("dense",) and count == len(BOOKS) + 1 and dense.title == "Dracula"
    assert "could not add keyword vectors" in messages[1]
    assert set(layout["sparse_vectors"]) == {ISSUE_18_KEYWORD_VECTOR}
    assert (folder / "books" / MANIFEST_NAME).read_text() == manifest_before
    assert sorted(path.name for path in folder.iterdir()) == [".lock", "books"]


def test_an_issue_18_server_collection_answers_dense_until_copied(vectors: np.ndarray) -> None:
    embedder = CountingEmbedder()
    client = QdrantClient(":memory:")
    client.create_collection(
        "books",
        vectors_config=models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE),
        sparse_vectors_config={
            ISSUE_18_KEYWORD_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
        metadata={"embedding_model": embedder.model_name, "dimension": vectors.shape[1]},
    )
    client.upsert(
        "books",
        [
            models.PointStruct(
                id=book_point_id(book.source_file, book.index),
                vector={"": vector},
                payload=book_payload(book, "sha"),
            )
            for book, vector in zip(BOOKS, vectors.tolist(), strict=True)
        ],
    )
    store = QdrantClientStore(client, "books", ":memory:", engine=LOCAL_MODE_ENGINE)
    copy = QdrantClientStore(client, "books_v2", ":memory:", engine=LOCAL_MODE_ENGINE)

    modes = store.search_modes()
    with pytest.raises(SearchRefusedError, match="migrate-store"):
        search_books(store, embedder, "bronte", 1, mode="keyword")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect")
        copied = copy_collection(store, copy)
    calls_by_the_copy = list(embedder.calls)
    [bronte] = search_books(copy, embedder, "bronte", 1, mode="keyword")
    [misspelled] = search_books(copy, embedder, "frankenstien", 1)

    assert modes == ("dense",) and calls_by_the_copy == []
    assert copied == copy.count() == len(BOOKS)
    assert bronte.author == "Charlotte Brontë" and misspelled.title == "Frankenstein"
    client.close()

"""One contract, two engines: the embedded Qdrant Edge shard (the real engine) and a Qdrant server
(the real qdrant-client against the REST stand-in of `qdrant_rest_stub`).

Everything the ops, search, the retrieval check, `info` and `migrate-store` ask of a store is
asked of both here, with the same expectations.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from book_pipeline.core.books.parsing import parse_book_text
from book_pipeline.core.store.base import (
    EDGE_ENGINE,
    SERVER_ENGINE,
    BookFilter,
    BookVectorStore,
    CollectionStamp,
    book_point_id,
)
from book_pipeline.core.store.errors import CollectionMismatchError
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline_tests.support.embedders import unit_vectors
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub

BOOKS = parse_book_text(
    "1 ::: Emma (1815) ::: Jane Austen ::: A matchmaker errs.\n"
    "2 ::: Persuasion (1817) ::: Jane Austen ::: A second chance.\n"
    "3 ::: Dracula (1897) ::: Bram Stoker ::: A count moves to London.\n"
    "4 ::: Ulysses (1922) ::: James Joyce ::: One day in Dublin.\n",
    "classics.txt",
)
OTHER_FILE = parse_book_text("1 ::: Beloved (1987) ::: Toni Morrison ::: A haunting.\n", "new.txt")
VECTORS = unit_vectors(4, 8)


@pytest.fixture(params=[EDGE_ENGINE, SERVER_ENGINE])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BookVectorStore]:
    if request.param == EDGE_ENGINE:
        with open_vector_store("books", tmp_path / "qdrant-edge") as edge_store:
            yield edge_store
        return
    with (
        qdrant_rest_stub(QdrantStubState()) as url,
        open_vector_store("books", tmp_path / "unused", url=url) as server_store,
    ):
        yield server_store


@pytest.fixture
def loaded(store: BookVectorStore) -> BookVectorStore:
    store.ensure_collection(8, "model-a")
    store.upsert_books(BOOKS, VECTORS, "sha-1")
    store.upsert_books(OTHER_FILE, unit_vectors(1, 8, seed=1), "sha-2")
    return store


def test_a_missing_collection_is_empty(store: BookVectorStore) -> None:
    assert not store.collection_exists()
    assert store.count() == 0
    store.remove_books(["classics.txt"])  # nothing to delete, no error


def test_upserting_again_keeps_one_point_per_book_and_the_model(loaded: BookVectorStore) -> None:
    loaded.upsert_books(BOOKS, VECTORS, "sha-1")
    assert loaded.count() == 5
    assert loaded.collection_model() == (8, "model-a")
    assert loaded.engine in (EDGE_ENGINE, SERVER_ENGINE) and loaded.location


def test_another_model_or_dimension_is_refused_naming_the_store(loaded: BookVectorStore) -> None:
    with pytest.raises(CollectionMismatchError, match="holds 8-dimensional vectors") as error:
        loaded.ensure_collection(4, "model-a")
    assert loaded.location in str(error.value)
    with pytest.raises(CollectionMismatchError, match="was built with 'model-a'"):
        loaded.ensure_collection(8, "model-b")
    assert loaded.count() == 5


def test_search_ranks_by_cosine_and_filters_by_author_and_year(loaded: BookVectorStore) -> None:
    [nearest] = loaded.search(VECTORS[2].tolist(), 1)
    assert nearest.id == book_point_id("classics.txt", 3)
    assert nearest.score == pytest.approx(1.0, abs=1e-5)
    assert nearest.payload["title"] == "Dracula"

    by_austen = loaded.search(VECTORS[2].tolist(), 10, BookFilter(author="Jane Austen"))
    assert sorted(hit.payload["title"] for hit in by_austen) == ["Emma", "Persuasion"]
    scores = [hit.score for hit in by_austen]
    assert scores == sorted(scores, reverse=True)
    in_range = loaded.search(VECTORS[0].tolist(), 10, BookFilter(year_from=1817, year_to=1922))
    assert {hit.payload["year"] for hit in in_range} == {1817, 1897, 1922}
    assert loaded.search(VECTORS[0].tolist(), 10, BookFilter(year_from=1990)) == []


def test_remove_books_keeps_the_given_ids_and_other_files(loaded: BookVectorStore) -> None:
    keep = [book_point_id("classics.txt", 1)]
    loaded.remove_books(["classics.txt"], keep_ids=keep)
    titles = sorted(point.payload["title"] for point in loaded.scroll(10)[0])
    assert titles == ["Beloved", "Emma"]
    loaded.remove_books(["classics.txt", "new.txt"])
    assert loaded.count() == 0


def test_scroll_pages_through_every_point_with_vectors(loaded: BookVectorStore) -> None:
    seen = []
    offset = None
    while True:
        page, offset = loaded.scroll(2, offset, with_vectors=True)
        seen.extend(page)
        if offset is None:
            break
    assert len(seen) == len({point.id for point in seen}) == 5
    assert all(point.vector is not None and len(point.vector) == 8 for point in seen)
    emma = next(point for point in seen if point.payload["title"] == "Emma")
    assert emma.vector == pytest.approx(VECTORS[0].tolist(), abs=1e-6)


def test_retrieve_returns_the_existing_points_only(loaded: BookVectorStore) -> None:
    ids = [book_point_id("classics.txt", 4), book_point_id("nowhere.txt", 1)]
    [ulysses] = loaded.retrieve(ids)
    assert ulysses.id == ids[0] and ulysses.payload["author"] == "James Joyce"
    assert ulysses.vector is None
    [with_vector] = loaded.retrieve(ids[:1], with_vectors=True)
    assert with_vector.vector == pytest.approx(VECTORS[3].tolist(), abs=1e-6)


def test_the_indexing_status_counts_every_point(loaded: BookVectorStore) -> None:
    points, indexed = loaded.indexing_status()
    assert points == 5 and 0 <= indexed <= points


def test_a_new_collection_has_a_generation_and_records_its_loads(store: BookVectorStore) -> None:
    assert store.stamp() is None
    store.ensure_collection(8, "model-a")
    stamp = store.stamp()
    assert stamp is not None and stamp.generation and stamp.load_sequence == 0

    assert store.record_load(1) == stamp.generation
    assert store.stamp() == CollectionStamp(stamp.generation, 1)
    assert store.collection_model() == (8, "model-a")


def test_stored_counts_are_each_files_points_counted_by_the_store(
    loaded: BookVectorStore,
) -> None:
    assert loaded.stored_counts() == {"classics.txt": 4, "new.txt": 1}
    loaded.remove_books(["classics.txt"], keep_ids=[book_point_id("classics.txt", 1)])
    assert loaded.stored_counts() == {"classics.txt": 1, "new.txt": 1}


def test_a_missing_collection_counts_nothing(store: BookVectorStore) -> None:
    assert store.stored_counts() == {}

"""Listing and loading against what the store holds, on both engines: the embedded Qdrant Edge
shard and a server's API (qdrant-client's local mode, which speaks it).

Every way the store can stop holding what the ledger records ends, after the next load, with
exactly one point per book and a record that says so.
"""

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from book_pipeline.core.books.parsing import ParsedBookFile, parse_book_file
from book_pipeline.core.embedding.book_file import EmbeddedBookFile
from book_pipeline.core.ingest.ledger import FileState, LoadLedger
from book_pipeline.core.ingest.loading import list_files_to_load, load_books, load_embedded_files
from book_pipeline.core.ingest.ownership import pipeline_id
from book_pipeline.core.store.base import BookVectorStore
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server import QdrantClientStore
from book_pipeline_tests.support.embedders import unit_vectors
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

DIMENSION = 8
MODEL = "model-a"
BOOKS_PER_FILE = 3

OpenStore = Callable[[str], AbstractContextManager[BookVectorStore]]


@pytest.fixture(params=["edge", "server"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens a collection by name, as each run does: an Edge folder, or one server."""
    if request.param == "edge":

        def open_edge(collection: str) -> AbstractContextManager[BookVectorStore]:
            return open_vector_store(collection, tmp_path / "qdrant-edge")

        yield open_edge
        return
    client = QdrantClient(location=":memory:")

    @contextmanager
    def open_server(collection: str) -> Iterator[BookVectorStore]:
        yield QdrantClientStore(client, collection, "memory")

    yield open_server
    client.close()


def embedded(paths: list[Path]) -> list[tuple[ParsedBookFile, object]]:
    files = [parse_book_file(path) for path in paths]
    return [
        (file, unit_vectors(len(file.books), DIMENSION, seed=i)) for i, file in enumerate(files)
    ]


def run(
    open_store: OpenStore, ledger: LoadLedger, books_dir: Path, collection: str = "books"
) -> list[str]:
    """One run: list, load what is pending (as the ops do); the names it loaded."""
    with open_store(collection) as store:
        listing = list_files_to_load(store, ledger, books_dir)
    pending = [snapshot.path for snapshot in listing.review.pending]
    with open_store(collection) as store:
        load_books(store, ledger, books_dir, embedded(pending), MODEL, True)
    return sorted(path.name for path in pending)


def assert_one_point_per_book(
    open_store: OpenStore, ledger: LoadLedger, books_dir: Path, collection: str = "books"
) -> None:
    with open_store(collection) as store:
        points, _ = store.scroll(10_000)
        stamp = store.stamp()
        counts = store.stored_counts()
    identities = [(p.payload["source_file"], p.payload["book_index"]) for p in points]
    files = sorted(path.name for path in books_dir.iterdir())
    assert len(identities) == len(set(identities)) == len(files) * BOOKS_PER_FILE
    assert counts == dict.fromkeys(files, BOOKS_PER_FILE)
    entries = ledger.entries(stamp)
    assert {name for name, e in entries.items() if e.state is FileState.LOADED} == set(files)


@pytest.fixture
def loaded(open_store: OpenStore, books_dir: Path, tmp_path: Path) -> LoadLedger:
    ledger = LoadLedger(tmp_path / "ledger.sqlite")
    write_synthetic_books(books_dir, files=3, books_per_file=BOOKS_PER_FILE)
    assert len(run(open_store, ledger, books_dir)) == 3
    assert run(open_store, ledger, books_dir) == []
    return ledger


def drop_collection(open_store: OpenStore, collection: str = "books") -> None:
    with open_store(collection) as store:
        if isinstance(store, QdrantClientStore):
            store.client.delete_collection(collection)
            return
    shutil.rmtree(Path(store.location))


def test_a_deleted_store_is_loaded_again_whole(
    open_store: OpenStore, loaded: LoadLedger, books_dir: Path
) -> None:
    drop_collection(open_store)

    with open_store("books") as store:
        listing = list_files_to_load(store, loaded, books_dir)
    assert listing.stamp is None
    assert len(listing.review.drifted) == 3
    assert "into another collection" in listing.review.drifted[0].describe()

    assert len(run(open_store, loaded, books_dir)) == 3
    assert_one_point_per_book(open_store, loaded, books_dir)
    assert run(open_store, loaded, books_dir) == []


def test_a_new_collection_name_loads_everything_and_switching_back_loads_nothing(
    open_store: OpenStore, loaded: LoadLedger, books_dir: Path
) -> None:
    assert len(run(open_store, loaded, books_dir, "books_b")) == 3
    assert_one_point_per_book(open_store, loaded, books_dir, "books_b")

    assert run(open_store, loaded, books_dir, "books") == []
    assert run(open_store, loaded, books_dir, "books_b") == []


def test_points_written_but_not_recorded_are_loaded_once(
    open_store: OpenStore, loaded: LoadLedger, books_dir: Path
) -> None:
    """A crash between writing a load's points (this pipeline's) and recording it: same ids,
    nothing doubled."""
    [new] = write_synthetic_books(books_dir, files=1, books_per_file=BOOKS_PER_FILE, first_file=3)
    with open_store("books") as store:
        for parsed, vectors in embedded([new]):
            store.upsert_books(parsed.books, vectors, parsed.sha256, pipeline_id(loaded))

    assert run(open_store, loaded, books_dir) == [new.name]
    assert_one_point_per_book(open_store, loaded, books_dir)


def test_books_the_store_lost_are_loaded_again(
    open_store: OpenStore, loaded: LoadLedger, books_dir: Path
) -> None:
    lost = sorted(books_dir.iterdir())[1].name
    with open_store("books") as store:
        store.remove_books([lost])

    assert run(open_store, loaded, books_dir) == [lost]
    assert_one_point_per_book(open_store, loaded, books_dir)


def test_books_no_record_knows_of_are_removed(
    open_store: OpenStore, loaded: LoadLedger, books_dir: Path, tmp_path: Path
) -> None:
    """Points of a file that was deleted before its load (this pipeline's) was recorded."""
    [stray] = write_synthetic_books(
        tmp_path / "elsewhere", files=1, books_per_file=2, first_file=50
    )
    with open_store("books") as store:
        for parsed, vectors in embedded([stray]):
            store.upsert_books(parsed.books, vectors, parsed.sha256, pipeline_id(loaded))
        listing = list_files_to_load(store, loaded, books_dir)
    assert listing.review.orphans == [stray.name]

    assert run(open_store, loaded, books_dir) == []
    assert_one_point_per_book(open_store, loaded, books_dir)


@pytest.mark.parametrize("open_store", ["edge"], indirect=True)
def test_an_older_copy_of_the_store_reloads_only_the_later_files(
    open_store: OpenStore, loaded: LoadLedger, books_dir: Path, tmp_path: Path
) -> None:
    """Edge: the shard's folder is what a backup copies."""
    open_edge = open_store
    with open_edge("books") as store:
        shard = Path(store.location)
    backup = tmp_path / "backup"
    shutil.copytree(shard, backup)
    [later] = write_synthetic_books(books_dir, files=1, books_per_file=BOOKS_PER_FILE, first_file=3)
    assert run(open_edge, loaded, books_dir) == [later.name]

    shutil.rmtree(shard)
    shutil.copytree(backup, shard)

    assert run(open_edge, loaded, books_dir) == [later.name]
    assert_one_point_per_book(open_edge, loaded, books_dir)
    assert run(open_edge, loaded, books_dir) == []


def test_a_load_reports_what_it_did_and_what_embedding_cost(
    open_store: OpenStore, tmp_path: Path
) -> None:
    books_dir, ledger = tmp_path / "books", LoadLedger(tmp_path / "ledger.sqlite")
    first, second = write_synthetic_books(books_dir, files=2, books_per_file=BOOKS_PER_FILE)
    files = [
        EmbeddedBookFile(
            file, vectors, MODEL, cache_hits=1, cache_misses=2, tokens=30, tokens_saved=10
        )
        for file, vectors in embedded([first, second])
    ]
    with open_store("books") as store:
        summary = load_embedded_files(store, ledger, books_dir, files, MODEL, True, True, 0.02)
    second.unlink()
    with open_store("books") as store:
        after_delete = load_embedded_files(store, ledger, books_dir, [], MODEL, True, True, None)

    assert summary.counts == {
        "files_processed": 2,
        "books_loaded": 2 * BOOKS_PER_FILE,
        "files_removed": 0,
        "orphan_files_removed": 0,
        "removals_held": 0,
        "failed_files_skipped": 0,
        "collection_size": 2 * BOOKS_PER_FILE,
        "embedding_model": MODEL,
        "embedding_dimension": DIMENSION,
        "embedding_cache_hits": 2,
        "embedding_cache_misses": 4,
        "embedding_tokens": 60,
        "embedding_cost_usd": 60 * 0.02 / 1_000_000,
        "embedding_price_per_mtok": 0.02,
        "embedding_texts_from_cache": 2,
        "embedding_tokens_saved": 20,
        "load_sequence": 1,
    }
    assert summary.loaded_files == [first.name, second.name]
    assert (
        "loaded 6 book(s) from 2 file(s) into the Qdrant collection 'books' at here "
        in (summary.messages("books", "here")[0])
    )
    # Nothing embedded: the dimension comes from the collection, an unknown price stays unknown.
    assert after_delete.counts["files_removed"] == 1
    assert after_delete.counts["collection_size"] == BOOKS_PER_FILE
    assert after_delete.counts["embedding_dimension"] == DIMENSION
    assert after_delete.counts["embedding_cost_usd"] is None
    assert "no price known for 'model-a'" in after_delete.messages("books", "here")[1]

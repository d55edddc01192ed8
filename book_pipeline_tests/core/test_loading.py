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

from book_pipeline.core.ledger import FileState, LoadLedger
from book_pipeline.core.loading import list_files_to_load, load_books
from book_pipeline.core.parsing import ParsedBookFile, parse_book_file
from book_pipeline.core.store.base import BookVectorStore
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server import QdrantClientStore
from book_pipeline.core.synthetic_books import write_synthetic_books
from book_pipeline_tests.support.embedders import unit_vectors

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
    """A crash between writing a load's points and recording it: same ids, nothing doubled."""
    [new] = write_synthetic_books(books_dir, files=1, books_per_file=BOOKS_PER_FILE, first_file=3)
    with open_store("books") as store:
        for parsed, vectors in embedded([new]):
            store.upsert_books(parsed.books, vectors, parsed.sha256)

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
    """Points of a file that was deleted before its load was recorded."""
    [stray] = write_synthetic_books(
        tmp_path / "elsewhere", files=1, books_per_file=2, first_file=50
    )
    with open_store("books") as store:
        for parsed, vectors in embedded([stray]):
            store.upsert_books(parsed.books, vectors, parsed.sha256)
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

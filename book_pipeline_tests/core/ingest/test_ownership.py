"""A pipeline removes only what it loaded: two pipelines (two data folders, two books folders)
sharing one collection keep each other's books; a fresh data folder leaves the books already in
the collection alone; a collection loaded before pipelines were told apart is claimed by its
pipeline's next load, nothing embedded again.

Real runs (the real Dagster instance, the bundled model) against a server's REST API (the
loopback stub answering from qdrant-client's local mode), and the core's loads against the real
Edge store and qdrant-client's local mode."""

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from qdrant_client import QdrantClient

from book_pipeline import cli
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.ingest.loading import list_files_to_load, load_books
from book_pipeline.core.ingest.ownership import OtherPipelinesFilesError, pipeline_id
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.store.base import PIPELINE_FIELD, BookVectorStore
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server import QdrantClientStore
from book_pipeline_tests.support.data_folder import ledger_in, qdrant_in
from book_pipeline_tests.support.embedders import unit_vectors
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

FIXTURES = Path(__file__).parents[2] / "fixtures"
SAMPLE_POINTS = 45


def server_config(books_dir: Path, data_dir: Path, url: str) -> dict[str, Any]:
    run_config = fetch_data_run_config(books_dir, data_dir)
    run_config["resources"]["qdrant"]["config"]["url"] = url
    return run_config


@pytest.fixture
def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A's books: copies of the samples; B's: three synthetic files of ten books."""
    a_books, b_books = tmp_path / "a_books", tmp_path / "b_books"
    shutil.copytree(SAMPLE_BOOKS_DIR, a_books)
    write_synthetic_books(b_books, files=3, books_per_file=10)
    return a_books, b_books


def test_two_pipelines_sharing_a_server_collection_keep_each_others_books(
    two_folders: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a_books, b_books = two_folders
    a_data, b_data = tmp_path / "a_data", tmp_path / "b_data"
    state = QdrantStubState()

    def run(books: Path, data: Path) -> dg.ExecuteInProcessResult:
        return fetch_data_job().execute_in_process(
            run_config=server_config(books, data, url), instance=instance
        )

    with qdrant_rest_stub(state) as url, dg.instance_for_test() as instance:
        assert run(a_books, a_data).success
        b_first = run(b_books, b_data)
        a_again = run(a_books, a_data)
        b_again = run(b_books, b_data)
        (a_books / "romance.txt").unlink()
        a_removes = run(a_books, a_data)
        points = state.local.count(DEFAULT_COLLECTION).count
        owners = {
            point.payload[PIPELINE_FIELD]
            for point in state.local.scroll(DEFAULT_COLLECTION, limit=1000)[0]
            if point.payload
        }
        for name in ("QDRANT_URL", "QDRANT_API_KEY", "BOOK_PIPELINE_COLLECTION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("QDRANT_URL", url)
        monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(b_data))
        monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(b_books))
        capsys.readouterr()
        assert cli.main(["status"]) == cli.EXIT_OK
        status = capsys.readouterr().out
        assert cli.main(["info", "--json"]) == cli.EXIT_OK
        info = json.loads(capsys.readouterr().out)

    romance = len(parse_book_file(SAMPLE_BOOKS_DIR / "romance.txt").books)
    summaries = [r.output_for_node("book_embeddings") for r in (b_first, a_again, b_again)]
    assert [
        (s["files_processed"], s["files_removed"], s["orphan_files_removed"]) for s in summaries
    ] == [
        (3, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
    ]
    assert a_removes.output_for_node("book_embeddings")["files_removed"] == 1
    assert points == SAMPLE_POINTS - romance + 30
    assert owners == {pipeline_id(ledger_in(a_data)), pipeline_id(ledger_in(b_data))}
    assert f"not this pipeline's: {SAMPLE_POINTS - romance} book(s) of 5 file(s)" in status
    assert "\n3 loaded\n" in status
    assert info["points"] == points and info["other_points"] == SAMPLE_POINTS - romance


@pytest.fixture(params=["edge", "local mode"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """One collection two pipelines open: an Edge folder, or a server's API (local mode)."""
    if request.param == "edge":
        yield lambda: open_vector_store(DEFAULT_COLLECTION, tmp_path / "shared-edge")
        return
    client = QdrantClient(location=":memory:")

    class _Open:
        def __enter__(self) -> BookVectorStore:
            return QdrantClientStore(client, DEFAULT_COLLECTION, "memory")

        def __exit__(self, *_: object) -> None:
            return None

    yield _Open
    client.close()


def core_run(open_store: Any, ledger: LoadLedger, books_dir: Path) -> list[str]:
    with open_store() as store:
        pending = [s.path for s in list_files_to_load(store, ledger, books_dir).review.pending]
        files = [parse_book_file(path) for path in pending]
        load_books(
            store,
            ledger,
            books_dir,
            [(file, unit_vectors(len(file.books), 8, seed=i)) for i, file in enumerate(files)],
            "model-a",
            True,
        )
    return sorted(path.name for path in pending)


def test_a_fresh_data_folder_leaves_the_collections_books_alone(
    shared_store: Any, two_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """A pipeline started with a fresh data folder against a collection holding books: it loads
    its own files and removes none of the others, even with an empty books folder; a file of the
    same name as another pipeline's is refused before anything is written."""
    _, b_books = two_folders
    first = LoadLedger(tmp_path / "first" / "ledger.sqlite")
    fresh = LoadLedger(tmp_path / "fresh" / "ledger.sqlite")
    assert core_run(shared_store, first, b_books) == sorted(p.name for p in b_books.iterdir())
    empty = tmp_path / "empty"
    empty.mkdir()

    assert core_run(shared_store, fresh, empty) == []
    with shared_store() as store:
        listing = list_files_to_load(store, fresh, empty)
        assert store.count() == 30
    assert listing.others == dict.fromkeys(sorted(p.name for p in b_books.iterdir()), 10)
    assert listing.review.orphans == [] and listing.review.removed == []

    with pytest.raises(OtherPipelinesFilesError, match=r"books_00001\.txt"):
        core_run(shared_store, fresh, b_books)
    with shared_store() as store:
        assert store.count() == 30
        assert set(store.stored_counts(pipeline_id(first))) == {p.name for p in b_books.iterdir()}


def test_a_collection_of_an_earlier_release_is_claimed_by_its_pipeline_without_embedding(
    data_dir: Path, tmp_path: Path, two_folders: tuple[Path, Path]
) -> None:
    """The release before issue 18's data folder: its points carry no pipeline. Its pipeline's
    next run loads nothing and claims them; a second pipeline writing into the same Edge store
    then keeps them."""
    with tarfile.open(FIXTURES / "previous_release_data.tar.gz") as archive:
        archive.extractall(data_dir, filter="data")
    _, b_books = two_folders
    other_data = tmp_path / "other_data"

    with dg.instance_for_test() as instance:
        claimed = fetch_data_job().execute_in_process(
            run_config=fetch_data_run_config(SAMPLE_BOOKS_DIR, data_dir), instance=instance
        )
        other_config = fetch_data_run_config(b_books, other_data)
        other_config["resources"]["qdrant"]["config"] = qdrant_in(data_dir).model_dump()
        other = fetch_data_job().execute_in_process(run_config=other_config, instance=instance)

    assert claimed.success and other.success
    assert claimed.output_for_node("book_embeddings")["files_processed"] == 0
    assert other.output_for_node("book_embeddings")["orphan_files_removed"] == 0
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(1000)
    owners = [point.payload.get(PIPELINE_FIELD) for point in points]
    assert owners.count(pipeline_id(ledger_in(data_dir))) == SAMPLE_POINTS
    assert owners.count(pipeline_id(ledger_in(other_data))) == 30

"""The embedded Qdrant Edge store's own duties: its folder, bad states, and the upgrade from the
previous version's store (qdrant-client local mode) that it replaces. All on the real engines."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from book_pipeline import cli
from book_pipeline.core.edge_store import MANIFEST_NAME
from book_pipeline.core.migration import LEGACY_UPGRADE_COMMAND, MigrationError
from book_pipeline.core.parsing import parse_book_text
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.vector_store import (
    CollectionMismatchError,
    StoreDamagedError,
    book_payload,
    book_point_id,
    open_vector_store,
)
from book_pipeline.defs.resources import QdrantResource, embedded_store_paths
from book_pipeline_tests.conftest import unit_vectors

MODEL = "model-a"
LEGACY_BOOKS = parse_book_text(
    "".join(f"{n} ::: Book {n} ({1700 + n}) ::: Author {n % 7} ::: On {n}.\n" for n in range(300)),
    "legacy.txt",
)
LEGACY_VECTORS = unit_vectors(len(LEGACY_BOOKS), 8, seed=5)


def folder_fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def write_legacy_store(path: Path, collection: str = DEFAULT_COLLECTION) -> None:
    """What the previous version's load left: a local-mode collection with the model recorded."""
    client = QdrantClient(path=str(path))
    client.create_collection(
        collection,
        vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE),
        metadata={"embedding_model": MODEL, "dimension": 8},
    )
    client.upsert(
        collection,
        points=[
            models.PointStruct(
                id=book_point_id(book.source_file, book.index),
                vector=vector.tolist(),
                payload=book_payload(book, "sha"),
            )
            for book, vector in zip(LEGACY_BOOKS, LEGACY_VECTORS, strict=True)
        ],
    )
    client.close()


@pytest.fixture
def edge_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's configured store: the embedded one in `data_dir`."""
    for name in ("QDRANT_URL", "BOOK_PIPELINE_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))


def qdrant_for(data_dir: Path) -> QdrantResource:
    return QdrantResource(**embedded_store_paths(data_dir))


def test_the_embedded_path_never_imports_qdrant_client(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from book_pipeline.core.search import search_books\n"
        "from book_pipeline.core.vector_store import BookFilter, open_vector_store\n"
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
    assert json.loads((tmp_path / "edge" / "books" / MANIFEST_NAME).read_text()) == {
        "embedding_model": MODEL,
        "dimension": 8,
    }


def test_the_first_open_copies_the_previous_versions_store(data_dir: Path) -> None:
    legacy = data_dir / "qdrant"
    write_legacy_store(legacy)
    before = folder_fingerprint(legacy)
    messages: list[str] = []

    with qdrant_for(data_dir).open(on_wait=messages.append) as store:
        assert store.count() == len(LEGACY_BOOKS)
        assert store.collection_model() == (8, MODEL)
        copies = {point.id: point for point in store.scroll(1000, with_vectors=True)[0]}
    with qdrant_for(data_dir).open(on_wait=messages.append) as store:
        assert store.count() == len(LEGACY_BOOKS)  # once only

    assert folder_fingerprint(legacy) == before
    assert len(messages) == 2 and "copying collection 'books'" in messages[0]
    assert f"copied and verified {len(LEGACY_BOOKS)} points" in messages[1]
    for book, vector in zip(LEGACY_BOOKS, LEGACY_VECTORS, strict=True):
        copy = copies[book_point_id(book.source_file, book.index)]
        assert copy.payload == book_payload(book, "sha")
        np.testing.assert_allclose(copy.vector, vector, rtol=0, atol=1e-6)


def test_a_legacy_store_in_use_names_the_command_and_changes_nothing(data_dir: Path) -> None:
    legacy = data_dir / "qdrant"
    write_legacy_store(legacy)
    holder = QdrantClient(path=str(legacy))  # an old pipeline still running
    try:
        with pytest.raises(MigrationError) as error, qdrant_for(data_dir).open():
            pass
    finally:
        holder.close()
    message = str(error.value)
    assert str(legacy) in message and f"{LEGACY_UPGRADE_COMMAND} {legacy}" in message
    assert not (data_dir / "qdrant-edge" / DEFAULT_COLLECTION).exists()
    assert not list((data_dir / "qdrant-edge").glob(".books.partial-*"))


def test_the_named_command_copies_the_previous_versions_store(
    data_dir: Path, edge_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    write_legacy_store(data_dir / "qdrant")

    assert cli.main(["migrate-store", "--from-legacy"]) == cli.EXIT_OK
    assert cli.main(["migrate-store", "--from-legacy"]) == cli.EXIT_OK  # again: same points
    assert cli.main(["info", "--json"]) == cli.EXIT_OK

    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == out[1]
        == (
            f"copied {len(LEGACY_BOOKS)} points; collection 'books' at "
            f"{data_dir / 'qdrant-edge' / 'books'} holds {len(LEGACY_BOOKS)} points"
        )
    )
    assert json.loads(out[2]) == {
        "engine": "qdrant-edge",
        "location": str(data_dir / "qdrant-edge" / "books"),
        "collection": "books",
        "points": len(LEGACY_BOOKS),
        "model": MODEL,
        "dimension": 8,
        "search_modes": ["hybrid", "dense", "keyword"],
    }


def test_info_on_an_empty_store_and_in_words(
    data_dir: Path, edge_env: None, capsys: pytest.CaptureFixture[str]
) -> None:

    assert cli.main(["info"]) == cli.EXIT_OK

    out = capsys.readouterr().out
    assert "engine:     qdrant-edge" in out and "points:     0" in out and "model:      -" in out

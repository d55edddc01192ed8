"""The previous version's store copied into Edge: by the first open, or by the named command."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from book_pipeline import cli
from book_pipeline.core.runtime.disk_space import folder_size_bytes
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.store.base import (
    book_payload,
    book_point_id,
)
from book_pipeline.core.store.errors import MigrationError
from book_pipeline.core.store.keyword_vectors import query_keyword_vector
from book_pipeline.core.store.legacy import LEGACY_UPGRADE_COMMAND
from book_pipeline_tests.support.data_folder import folder_fingerprint, qdrant_in
from book_pipeline_tests.support.legacy_store import (
    LEGACY_BOOKS,
    LEGACY_VECTORS,
    MODEL,
    write_legacy_store,
)


def test_the_first_open_copies_the_previous_versions_store(data_dir: Path) -> None:
    legacy = data_dir / "qdrant"
    write_legacy_store(legacy)
    before = folder_fingerprint(legacy)
    messages: list[str] = []

    with qdrant_in(data_dir).open(on_wait=messages.append) as store:
        assert store.count() == len(LEGACY_BOOKS)
        assert store.collection_model() == (8, MODEL)
        copies = {point.id: point for point in store.scroll(1000, with_vectors=True)[0]}
        # The copy made the keyword vectors from the payloads: "Author 3" wrote Book 3, 10, ...
        by_author = store.keyword_search(query_keyword_vector("Author 3"), 3)
        assert store.search_modes() == ("hybrid", "dense", "keyword")
        assert {hit.payload["author"] for hit in by_author} == {"Author 3"}
    with qdrant_in(data_dir).open(on_wait=messages.append) as store:
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
        with pytest.raises(MigrationError) as error, qdrant_in(data_dir).open():
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
    info = json.loads(out[2])
    # What the store's files take (their blocks), and what the filesystem has left.
    assert info.pop("size_on_disk") == folder_size_bytes(data_dir / "qdrant-edge") > 0
    assert 0 < info.pop("free_space") <= shutil.disk_usage(data_dir).total
    # The copy is version 1 of the collection, current, and built with the old store's model.
    [version] = info.pop("versions")
    assert (version["version"], version["collection"], version["model"], version["state"]) == (
        1,
        "books",
        MODEL,
        "current",
    )
    assert info == {
        "engine": "qdrant-edge",
        "location": str(data_dir / "qdrant-edge" / "books"),
        "collection": "books",
        "points": len(LEGACY_BOOKS),
        # No ledger records loading them here (the test writes the old store alone).
        "other_points": len(LEGACY_BOOKS),
        "model": MODEL,
        "dimension": 8,
        "search_modes": ["hybrid", "dense", "keyword"],
    }

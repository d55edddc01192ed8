"""Collection versions on both engines: the embedded store's pointer file and a server's alias
(the real qdrant-client against the REST stand-in, which applies alias changes as one request).

A process killed in the middle of a switch (the fail point, in a `book-pipeline versions switch`
of its own) leaves exactly one current version: the one before the switch.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from book_pipeline.core.books.parsing import parse_book_text
from book_pipeline.core.runtime.fail_points import IN_THE_MIDDLE_OF_THE_SWITCH
from book_pipeline.core.store.base import EDGE_ENGINE, SERVER_ENGINE
from book_pipeline.core.store.opening import open_store_versions, open_vector_store
from book_pipeline.core.store.versions import (
    EmbedderRecord,
    VersionCatalog,
    VersionError,
    VersionRecord,
    version_name,
    version_number,
)
from book_pipeline_tests.support.embedders import unit_vectors
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub

BOOKS = parse_book_text(
    "1 ::: Emma (1815) ::: Jane Austen ::: A matchmaker errs.\n"
    "2 ::: Dracula (1897) ::: Bram Stoker ::: A count moves to London.\n",
    "classics.txt",
)


@dataclass
class Engine:
    name: str
    edge_folder: Path
    url: str | None

    def versions(self) -> AbstractContextManager[VersionCatalog]:
        return open_store_versions("books", self.edge_folder, self.url)

    def environment(self) -> dict[str, str]:
        environment = {
            "BOOK_PIPELINE_DATA_DIR": str(self.edge_folder.parent),
            "BOOK_PIPELINE_COLLECTION": "books",
        }
        if self.url:
            environment["QDRANT_URL"] = self.url
        return environment


@pytest.fixture(params=[EDGE_ENGINE, SERVER_ENGINE])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    folder = tmp_path / "data" / "qdrant-edge"
    if request.param == EDGE_ENGINE:
        yield Engine(request.param, folder, None)
        return
    with qdrant_rest_stub(QdrantStubState()) as url:
        yield Engine(request.param, folder, url)


def build(catalog: VersionCatalog, name: str, model: str, dimension: int) -> None:
    store = catalog.open(name)
    store.ensure_collection(dimension, model)
    store.upsert_books(BOOKS, unit_vectors(len(BOOKS), dimension), "sha")
    catalog.write_record(name, VersionRecord(EmbedderRecord("openai", model, dimension)))


@pytest.fixture
def two_versions(engine: Engine) -> Engine:
    with engine.versions() as catalog:
        build(catalog, "books", "model-a", 8)
        build(catalog, catalog.next_name(), "model-b", 12)
    return engine


def test_names_number_the_versions_and_leave_other_collections_alone() -> None:
    assert [version_name("books", n) for n in (1, 2, 10)] == ["books", "books__v2", "books__v10"]
    assert [version_number("books", name) for name in ("books", "books__v2", "books__v10")] == [
        1,
        2,
        10,
    ]
    for other in ("books_b", "books__v1", "books__v02", "books__current", "shelf__v2"):
        assert version_number("books", other) is None


def test_an_existing_collection_is_version_1_and_current_without_a_pointer(engine: Engine) -> None:
    with engine.versions() as catalog:
        assert catalog.names() == [] and catalog.current_name() == "books"
        build(catalog, "books", "model-a", 8)
        assert not catalog.has_pointer()
        [version] = catalog.versions()
        assert (version.number, version.current, version.model, version.points) == (
            1,
            True,
            "model-a",
            2,
        )
        catalog.ensure_pointer()
        assert catalog.has_pointer() and catalog.current_name() == "books"


def test_a_switch_is_seen_by_every_new_open_and_a_rollback_marks_the_version(
    two_versions: Engine,
) -> None:
    engine = two_versions
    with engine.versions() as catalog:
        assert catalog.names() == ["books", "books__v2"]
        assert catalog.version_for_model("model-b") == "books__v2"
        catalog.switch("books__v2")
    with open_vector_store("books", engine.edge_folder, engine.url) as current:
        assert current.collection == "books__v2"
        assert current.collection_model() == (12, "model-b")
    with engine.versions() as catalog:
        catalog.switch(catalog.resolve(1), rolled_back="books__v2")
        assert catalog.current_name() == "books"
        assert catalog.read_record("books__v2").rolled_back
        assert not catalog.read_record("books").rolled_back
        with pytest.raises(VersionError, match="has no version 7"):
            catalog.resolve(7)


def test_removing_unused_versions_keeps_the_current_one_and_a_rebuild(
    two_versions: Engine,
) -> None:
    with two_versions.versions() as catalog:
        build(catalog, catalog.next_name(), "model-c", 4)
        catalog.switch("books__v2")
    with two_versions.versions() as catalog:
        assert catalog.remove_unused(keep={"books__v3"}) == ["books"]
        assert catalog.names() == ["books__v2", "books__v3"]
    with two_versions.versions() as catalog:
        assert catalog.current_name() == "books__v2"
        assert catalog.open("books__v2").count() == len(BOOKS)


@pytest.mark.slow  # a `book-pipeline` process of its own
def test_a_crash_in_the_middle_of_a_switch_leaves_exactly_one_current_version(
    two_versions: Engine,
) -> None:
    engine = two_versions
    switch = subprocess.run(
        [str(Path(sys.executable).with_name("book-pipeline")), "versions", "switch", "2"],
        env={
            **os.environ,
            **engine.environment(),
            "BOOK_PIPELINE_FAIL_POINT": IN_THE_MIDDLE_OF_THE_SWITCH,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert switch.returncode == -9, switch.stderr  # killed by the fail point
    with engine.versions() as catalog:
        assert catalog.current_name() == "books"
        assert [v.name for v in catalog.versions() if v.current] == ["books"]
        # A switch after the crash completes, and is the only current version then.
        catalog.switch("books__v2")
        assert [v.name for v in catalog.versions() if v.current] == ["books__v2"]

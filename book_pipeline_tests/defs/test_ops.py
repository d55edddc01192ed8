"""fetch_data's listing and load ops against what the store holds: real runs, a real embedded
Qdrant Edge store (and a server's API), the embeddings from the loopback OpenAI-compatible
server, which counts the model calls.

Every way the store can stop holding what the ledger records ends, after the next run, with
exactly one point per book; with the embedding cache, loading the books again costs no model
call: the embed steps miss the cache for no text, and the model server sees no more requests
than the retrieval check's own probe queries (at most one per probe and search mode).
"""

import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from book_pipeline.core.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.ledger import FileState
from book_pipeline.core.store.base import SEARCH_MODES, CollectionStamp
from book_pipeline.core.synthetic_books import write_synthetic_books
from book_pipeline.defs.checks import SELF_PROBE_COUNT
from book_pipeline_tests.support.data_folder import ledger_in, qdrant_in, recorded_entries
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BOOKS_PER_FILE = 4


@dataclass
class Pipeline:
    """fetch_data over one books folder and data folder, embedding through the loopback server."""

    instance: dg.DagsterInstance
    books_dir: Path
    data_dir: Path
    embeddings: EmbeddingsServerState
    base_url: str

    def run(self, **qdrant: Any) -> dict[str, Any]:
        """One run; its load's summary and the model calls it made."""
        calls_before = len(self.embeddings.requests)
        run_config = fetch_data_run_config(
            self.books_dir,
            self.data_dir,
            provider="openai",
            openai_base_url=self.base_url,
            openai_api_key="sk-test",
            model=qdrant.pop("model", "text-embedding-3-small"),
        )
        run_config["resources"]["qdrant"]["config"].update(qdrant)
        result = fetch_data_job().execute_in_process(run_config=run_config, instance=self.instance)
        assert result.success
        summary = dict(result.output_for_node("book_embeddings"))
        summary["model_calls"] = len(self.embeddings.requests) - calls_before
        return summary

    def reloaded_without_model_calls(self, summary: dict[str, Any]) -> bool:
        return summary["embedding_cache_misses"] == 0 and summary["model_calls"] <= (
            SELF_PROBE_COUNT * len(SEARCH_MODES)
        )

    def points(self, collection: str = "books") -> list[tuple[str, int]]:
        store_resource = qdrant_in(self.data_dir).model_copy(update={"collection": collection})
        with store_resource.open() as store:
            points, _ = store.scroll(10_000)
        return [(p.payload["source_file"], p.payload["book_index"]) for p in points]

    def books(self) -> int:
        return len(list(self.books_dir.iterdir())) * BOOKS_PER_FILE


@pytest.fixture
def pipeline(books_dir: Path, data_dir: Path) -> Iterator[Pipeline]:
    write_synthetic_books(books_dir, files=3, books_per_file=BOOKS_PER_FILE)
    state = EmbeddingsServerState(dimensions=16)
    with embeddings_server(state) as base_url, dg.instance_for_test() as instance:
        pipeline = Pipeline(instance, books_dir, data_dir, state, base_url)
        first = pipeline.run()
        assert first["files_processed"] == 3 and first["model_calls"] > 0
        yield pipeline


def assert_exactly_one_point_per_book(pipeline: Pipeline, collection: str = "books") -> None:
    points = pipeline.points(collection)
    assert len(points) == len(set(points)) == pipeline.books()


@pytest.mark.parametrize("how", ["deleted", "moved away"])
def test_a_store_deleted_or_moved_away_is_loaded_again_without_model_calls(
    pipeline: Pipeline, how: str, tmp_path: Path
) -> None:
    store = pipeline.data_dir / "qdrant-edge"
    if how == "deleted":
        shutil.rmtree(store)
    else:
        store.rename(tmp_path / "moved-away")

    again = pipeline.run()

    assert (again["files_processed"], again["collection_size"]) == (3, pipeline.books())
    assert pipeline.reloaded_without_model_calls(again)
    assert_exactly_one_point_per_book(pipeline)
    assert pipeline.run()["files_processed"] == 0


def test_an_older_backup_restored_reloads_only_the_files_loaded_after_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    shard = pipeline.data_dir / "qdrant-edge" / "books"
    backup = tmp_path / "backup"
    shutil.copytree(shard, backup)
    write_synthetic_books(pipeline.books_dir, files=2, books_per_file=BOOKS_PER_FILE, first_file=3)
    assert pipeline.run()["files_processed"] == 2
    shutil.rmtree(shard)
    shutil.copytree(backup, shard)

    restored = pipeline.run()

    assert restored["files_processed"] == 2
    assert pipeline.reloaded_without_model_calls(restored)
    assert_exactly_one_point_per_book(pipeline)


def test_a_new_collection_loads_everything_and_switching_back_loads_nothing(
    pipeline: Pipeline,
) -> None:
    other = pipeline.run(collection="books_b")
    assert other["files_processed"] == 3
    assert pipeline.reloaded_without_model_calls(other)
    assert_exactly_one_point_per_book(pipeline, "books_b")

    assert pipeline.run()["files_processed"] == 0
    assert pipeline.run(collection="books_b")["files_processed"] == 0


def test_a_new_model_in_its_own_collection_loads_everything_once(pipeline: Pipeline) -> None:
    new_model = pipeline.run(collection="books_large", model="text-embedding-3-large")
    assert new_model["files_processed"] == 3
    assert new_model["embedding_model"] == "text-embedding-3-large"
    assert new_model["embedding_cache_misses"] == pipeline.books()  # nothing of it was cached
    assert_exactly_one_point_per_book(pipeline, "books_large")

    assert (
        pipeline.run(collection="books_large", model="text-embedding-3-large")["files_processed"]
        == 0
    )
    assert pipeline.run()["files_processed"] == 0


def test_an_empty_server_and_a_new_server_collection_are_loaded_whole(
    pipeline: Pipeline,
) -> None:
    """The server path: a server that never held the books, then another collection there."""
    with qdrant_rest_stub(QdrantStubState()) as url:
        first = pipeline.run(url=url)
        assert first["files_processed"] == 3
        assert pipeline.reloaded_without_model_calls(first)
        assert pipeline.run(url=url)["files_processed"] == 0
        other = pipeline.run(url=url, collection="books_b")
        assert other["files_processed"] == 3
    with qdrant_rest_stub(QdrantStubState()) as emptied:
        assert pipeline.run(url=emptied)["files_processed"] == 3
    # The embedded store was left as it was: loaded, nothing to do.
    assert pipeline.run()["files_processed"] == 0


def test_a_data_folder_of_the_previous_release_loads_nothing_again(
    data_dir: Path, instance: dg.DagsterInstance
) -> None:
    """Made by the release before generations (fetch_data on the samples, its ledger without a
    collection column and its Edge shard without a generation): the store holds the books, so
    the first run of this release loads nothing and adopts the record."""
    with tarfile.open(FIXTURES / "previous_release_data.tar.gz") as archive:
        archive.extractall(data_dir, filter="data")
    run_config = fetch_data_run_config(SAMPLE_BOOKS_DIR, data_dir)

    result = fetch_data_job().execute_in_process(run_config=run_config, instance=instance)

    assert result.success
    summary = result.output_for_node("book_embeddings")
    assert (summary["files_processed"], summary["collection_size"]) == (0, 45)
    entries = recorded_entries(data_dir)
    assert len(entries) == 6
    assert all(entry.state is FileState.LOADED for entry in entries.values())
    with qdrant_in(data_dir).open() as store:
        stamp = store.stamp()
    assert stamp is not None and stamp.generation is not None and stamp.load_sequence == 1
    assert {entry.collection for entry in entries.values()} == {stamp.generation}
    # Nothing is left under the previous release: the collection adopted every record.
    assert ledger_in(data_dir).entries(CollectionStamp(None, 0)) == {}

"""fetch_data's listing and load ops against what the store holds: real runs, a real embedded
Qdrant Edge store (and a server's API), the embeddings from the loopback OpenAI-compatible
server, which counts the model calls.

Every way the store can stop holding what the ledger records ends, after the next run, with
exactly one point per book; with the embedding cache, loading the books again costs no model
call: the embed steps miss the cache for no text, and the model server sees no more requests
than the retrieval check's own probe queries (at most one per probe and search mode).
"""

import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpe_openai
import dagster as dg
import pytest

from book_pipeline.cli import main
from book_pipeline.core.books.files import mapping_key_for
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.ingest.ledger import FileState
from book_pipeline.core.store.base import SEARCH_MODES, CollectionStamp
from book_pipeline.defs.checks import SELF_PROBE_COUNT
from book_pipeline_tests.support.data_folder import ledger_in, qdrant_in, recorded_entries
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import (
    failure_messages,
    fetch_data_job,
    fetch_data_run_config,
    materialization_metadata,
    openai_run_config,
)
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

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
        run_config = openai_run_config(
            self.books_dir,
            self.data_dir,
            self.base_url,
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


# What embedding costs: real runs against the loopback server, which bills each input's tokens
# in cl100k_base, as OpenAI does.
_CL100K = bpe_openai.get_encoding("cl100k_base")


def billed(texts: list[str]) -> int:
    return sum(len(_CL100K.encode_ordinary(text)) for text in texts)


def book_texts(*paths: Path) -> list[str]:
    return [book.embedding_text for path in paths for book in parse_book_file(path).books]


def add_a_book(path: Path) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write("99 ::: The Lighthouse Keeper (1999) ::: Ines Novak ::: A storm, a lamp.\n")


@pytest.fixture
def cli_env(books_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`book-pipeline` reads the runs' folders and the openai provider's configuration."""
    monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(books_dir))
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("BOOK_PIPELINE_EMBEDDER", "openai")


def cli_json(capsys: pytest.CaptureFixture[str], *command: str) -> Any:
    capsys.readouterr()
    assert main([*command, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def cli_text(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    capsys.readouterr()
    assert main(list(command)) == 0
    return capsys.readouterr().out


def test_a_run_records_its_tokens_their_cost_and_what_the_cache_saved(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second, third = write_synthetic_books(books_dir, files=3, books_per_file=2)
    state = EmbeddingsServerState(dimensions=8)
    with embeddings_server(state) as base_url:
        run_config = openai_run_config(books_dir, data_dir, base_url)
        assert fetch_data_job().execute_in_process(run_config, instance=instance).success
        metadata = materialization_metadata(instance)
        assert metadata["embedding_tokens"] == billed(book_texts(first, second, third))
        # All the server billed: the retrieval check's self probes are books' texts, which it
        # finds in the embedding cache.
        assert metadata["embedding_tokens"] == state.billed_tokens
        assert metadata["embedding_cost_usd"] == pytest.approx(
            metadata["embedding_tokens"] * 0.02 / 1e6
        )
        assert (metadata["embedding_texts_from_cache"], metadata["embedding_tokens_saved"]) == (
            0,
            0,
        )
        # The same two books and one more: the cache serves the two.
        add_a_book(first)
        old_texts, new_text = book_texts(first)[:2], book_texts(first)[2]
        assert fetch_data_job().execute_in_process(run_config, instance=instance).success

    metadata = materialization_metadata(instance)
    assert metadata["files_processed"] == 1
    assert metadata["embedding_tokens"] == billed([new_text])
    assert metadata["embedding_texts_from_cache"] == 2
    assert metadata["embedding_tokens_saved"] == billed(old_texts)
    rows = {row["file_name"]: row for row in cli_json(capsys, "status")}
    assert rows[first.name]["tokens"] == billed([new_text])
    assert rows[third.name]["tokens"] == billed(book_texts(third))
    assert rows[third.name]["cost_usd"] == pytest.approx(billed(book_texts(third)) * 0.02 / 1e6)
    total = billed([new_text, *book_texts(second, third)])
    table = cli_text(capsys, "status")
    assert f"embedding: {total} token(s) billed for the 3 file(s) as last loaded" in table
    assert f"${total * 0.02 / 1e6:.6f} (at $0.02 per million tokens of text-embedding-3-small)" in (
        table
    )


def test_the_estimate_is_what_the_next_run_is_billed(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=2)
    state = EmbeddingsServerState(dimensions=8)
    with embeddings_server(state) as base_url:
        run_config = openai_run_config(books_dir, data_dir, base_url)
        assert fetch_data_job().execute_in_process(run_config, instance=instance).success
        # Two new files, and one changed: its first two books are in the cache.
        write_synthetic_books(books_dir, files=2, books_per_file=2, seed=7, first_file=2)
        add_a_book(books_dir / "books_00000.txt")
        requests_before = len(state.requests)

        estimate = cli_json(capsys, "estimate")
        text = cli_text(capsys, "estimate")

        assert len(state.requests) == requests_before
        assert fetch_data_job().execute_in_process(run_config, instance=instance).success

    metadata = materialization_metadata(instance)
    assert estimate == {
        "files": 3,
        "books": 7,
        "cached_texts": 2,
        "tokens": metadata["embedding_tokens"],
        "cost_usd": pytest.approx(metadata["embedding_cost_usd"]),
        "exact_tokens": True,
    }
    assert metadata["embedding_texts_from_cache"] == 2
    assert "books_00000.txt\nbooks_00002.txt\nbooks_00003.txt\n" in text
    assert f"{estimate['tokens']} token(s) to pay for (exactly)" in text


def test_a_model_without_a_price_costs_unknown_not_nothing(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BOOK_PIPELINE_EMBEDDING_MODEL", "house-embedder")
    [path] = write_synthetic_books(books_dir, files=1, books_per_file=2)
    before = cli_json(capsys, "estimate")
    assert (before["tokens"], before["cost_usd"], before["exact_tokens"]) == (
        billed(book_texts(path)),
        None,
        False,
    )
    with embeddings_server(EmbeddingsServerState(dimensions=8)) as base_url:
        run_config = openai_run_config(books_dir, data_dir, base_url, model="house-embedder")
        assert fetch_data_job().execute_in_process(run_config, instance=instance).success

    metadata = materialization_metadata(instance)
    assert metadata["embedding_tokens"] == billed(book_texts(path))
    assert metadata["embedding_cost_usd"] == "unknown"
    assert cli_json(capsys, "status")[0]["cost_usd"] is None
    table = cli_text(capsys, "status")
    assert "unknown (no price known for 'house-embedder'" in table
    monkeypatch.setenv("BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK", "1.5")
    assert cli_json(capsys, "status")[0]["cost_usd"] == pytest.approx(
        billed(book_texts(path)) * 1.5 / 1e6
    )


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_the_budget_holds_back_the_files_that_would_pass_it(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    executor: str,
) -> None:
    """Files of 1 to 4 books and a budget of about half their tokens: the files that fit load,
    the others fail their own step and stay pending, and the next run loads them. With a process
    per step, files of 1 and 3 books: the same verdicts, at half the processes."""
    sizes = (1, 2, 3, 4) if executor == "in_process" else (1, 3)
    paths = [
        path
        for number, size in enumerate(sizes)
        for path in write_synthetic_books(
            books_dir, files=1, books_per_file=size, seed=number, first_file=number
        )
    ]
    needs = {path.name: billed(book_texts(path)) for path in paths}
    limit = sum(needs.values()) // 2
    state = EmbeddingsServerState(dimensions=8)
    with embeddings_server(state) as base_url:
        run_config = openai_run_config(books_dir, data_dir, base_url, max_tokens_per_run=limit)
        if executor == "multiprocess":
            run_config["execution"] = {"config": {"multiprocess": {"max_concurrent": 2}}}
        with dg.execute_job(
            dg.reconstructable(fetch_data_job), instance, run_config=run_config
        ) as result:
            assert not result.success
            run_id = result.run_id
        loaded = set(recorded_entries(data_dir))
        held_back = set(needs) - loaded
        # All the server billed in the run, the retrieval check's probes included.
        spent = state.billed_tokens

        assert held_back and loaded
        assert spent == sum(needs[name] for name in loaded) <= limit
        # Each held-back file needed more than the budget had left, even at the end.
        assert all(needs[name] > limit - spent for name in held_back)
        if executor == "in_process":
            started = [
                entry.dagster_event.step_key
                for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
                if "create_vector_embeddings[" in entry.dagster_event.step_key
            ]
            order = [path.name for key in started for path in paths
                     if key.endswith(f"[{mapping_key_for(path.name)}]")]  # fmt: skip
            expected_loaded, running_total = set(), 0
            for name in order:
                if running_total + needs[name] <= limit:
                    expected_loaded.add(name)
                    running_total += needs[name]
            assert loaded == expected_loaded
        failures = failure_messages(instance, run_id)
        assert set(failures) == {
            f"refuse_over_budget_book_file[{mapping_key_for(name)}]" for name in held_back
        }
        for name in held_back:
            message = failures[f"refuse_over_budget_book_file[{mapping_key_for(name)}]"]
            assert f"{name} was not embedded: it needs {needs[name]} token(s)" in message
            assert f"of its budget of {limit}" in message
        with qdrant_in(data_dir).open() as store:
            assert set(store.stored_counts()) == loaded

        # Without a budget, the next run loads the held-back files, and pays for them alone
        # (in process: what is checked is the ledger's pending files, not the executor).
        del run_config["resources"]["embedder"]["config"]["max_tokens_per_run"]
        run_config.pop("execution", None)
        with dg.execute_job(
            dg.reconstructable(fetch_data_job), instance, run_config=run_config
        ) as result:
            assert result.success
    metadata = materialization_metadata(instance)
    assert metadata["files_processed"] == len(held_back)
    assert metadata["embedding_tokens"] == sum(needs[name] for name in held_back)
    assert set(recorded_entries(data_dir)) == set(needs)

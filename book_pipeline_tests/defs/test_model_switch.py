"""A change of embedding model, end to end, on both engines (the embedded Qdrant Edge store, and
a server through the real qdrant-client against the REST stand-in): real fetch_data runs, the
loopback OpenAI-compatible server as the new model.

The rebuild goes over several runs while a search runs every 0.2 s: no search fails, each is
answered by a complete version (the old one until the switch, then the new one), a file added
and a file deleted during the rebuild reach the versions, and the tokens paid are `estimate`'s
figure plus the added file's. A gate that fails keeps the old version and fails its step; the
switch back is one command, and the pipeline then leaves the rolled-back version alone.
"""

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpe_openai
import dagster as dg
import pytest

from book_pipeline.cli import main
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.settings import EmbedderChoice
from book_pipeline.core.store.base import EDGE_ENGINE, SERVER_ENGINE
from book_pipeline.core.store.opening import open_store_versions
from book_pipeline.core.store.versions import VersionCatalog
from book_pipeline.defs.sensors import run_config_for
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.qdrant_rest_stub import QdrantStubState, qdrant_rest_stub
from book_pipeline_tests.support.runs import (
    failure_messages,
    fetch_data_job,
    fetch_data_run_config,
    openai_run_config,
)
from book_pipeline_tests.support.searching import Searcher
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

# Minutes each: several fetch_data runs per test.
pytestmark = pytest.mark.slow

OLD_MODEL = "text-embedding-3-small"
NEW_MODEL = "text-embedding-3-large"
FILES, BOOKS_PER_FILE, FILES_PER_RUN = 12, 3, 4
SEARCH_INTERVAL_SECONDS = 0.2
_CL100K = bpe_openai.get_encoding("cl100k_base")


@dataclass
class Store:
    """fetch_data over one books folder and data folder, on one engine."""

    instance: dg.DagsterInstance
    books_dir: Path
    data_dir: Path
    base_url: str
    url: str | None

    def run(
        self, model: str | None, only_files: list[str] | None = None, books_dir: Path | None = None
    ) -> dg.ExecuteInProcessResult:
        """A run with the loopback model `model`, or the bundled local one (None)."""
        folder = books_dir or self.books_dir
        run_config = (
            fetch_data_run_config(folder, self.data_dir)
            if model is None
            else openai_run_config(folder, self.data_dir, self.base_url, model=model)
        )
        if self.url:
            run_config["resources"]["qdrant"]["config"]["url"] = self.url
        if only_files is not None:
            run_config["ops"] = run_config_for(only_files)["ops"]
        return fetch_data_job().execute_in_process(
            run_config=run_config, instance=self.instance, raise_on_error=False
        )

    def versions(self) -> AbstractContextManager[VersionCatalog]:
        return open_store_versions(
            "books", self.data_dir / "qdrant-edge", self.url, lock_wait_seconds=120
        )

    def environment(self, monkeypatch: pytest.MonkeyPatch, model: str) -> None:
        """The CLI configured as the runs are, with `model`."""
        monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(self.books_dir))
        monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(self.data_dir))
        monkeypatch.setenv("BOOK_PIPELINE_EMBEDDER", "openai")
        monkeypatch.setenv("BOOK_PIPELINE_EMBEDDING_MODEL", model)
        monkeypatch.setenv("OPENAI_BASE_URL", self.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.delenv("BOOK_PIPELINE_COLLECTION", raising=False)
        if self.url:
            monkeypatch.setenv("QDRANT_URL", self.url)
        else:
            monkeypatch.delenv("QDRANT_URL", raising=False)

    def points_of(self, collection: str) -> dict[str, int]:
        with self.versions() as catalog:
            return catalog.open(collection).stored_counts()


@pytest.fixture(params=[EDGE_ENGINE, SERVER_ENGINE])
def store(request: pytest.FixtureRequest, books_dir: Path, data_dir: Path) -> Iterator[Store]:
    state = EmbeddingsServerState(dimensions=16)
    with embeddings_server(state) as base_url, dg.instance_for_test() as instance:
        if request.param == EDGE_ENGINE:
            yield Store(instance, books_dir, data_dir, base_url, None)
            return
        with qdrant_rest_stub(QdrantStubState()) as url:
            yield Store(instance, books_dir, data_dir, base_url, url)


def cli_json(capsys: pytest.CaptureFixture[str], *command: str) -> Any:
    capsys.readouterr()
    assert main([*command, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def cli_text(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    capsys.readouterr()
    assert main(list(command)) == 0
    return capsys.readouterr().out


def tokens_of(path: Path) -> int:
    return sum(
        len(_CL100K.encode_ordinary(book.embedding_text)) for book in parse_book_file(path).books
    )


def run_tokens(result: dg.ExecuteInProcessResult) -> int:
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata["embedding_tokens"].value


def check_result(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_a_rebuild_over_several_runs_never_takes_search_down(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_synthetic_books(store.books_dir, files=FILES, books_per_file=BOOKS_PER_FILE)
    assert store.run(OLD_MODEL).success
    store.environment(monkeypatch, NEW_MODEL)
    estimate = cli_json(capsys, "estimate")
    assert (estimate["files"], estimate["cached_texts"]) == (FILES, 0)

    searcher = Searcher(
        store.versions,
        EmbedderChoice(
            "openai", NEW_MODEL, Path("unused"), api_key="sk-test", base_url=store.base_url
        ),
        NEW_MODEL,
    )
    searcher.start()
    try:
        names = [path.name for path in paths]
        batches = [names[i : i + FILES_PER_RUN] for i in range(0, FILES, FILES_PER_RUN)]
        first = store.run(NEW_MODEL, batches[0])
        assert first.success
        assert "the switch waits" in check_result(first, "model_switch").description
        second = store.run(NEW_MODEL, batches[1])
        assert second.success
        rows = {row["collection"]: row for row in cli_json(capsys, "versions")}
        assert rows["books"]["state"] == "current"
        assert rows["books__v2"]["state"] == "being built"
        assert rows["books__v2"]["rebuild"]["files_loaded"] == 2 * FILES_PER_RUN
        assert rows["books__v2"]["rebuild"]["files_total"] == FILES
        assert "collection versions:" in cli_text(capsys, "status")

        # During the rebuild: a file loaded into both versions is deleted, a new one arrives.
        deleted = paths[0]
        deleted.unlink()
        [added] = write_synthetic_books(
            store.books_dir, files=1, books_per_file=BOOKS_PER_FILE, seed=5, first_file=FILES
        )
        last = store.run(NEW_MODEL, [*batches[2], added.name])
        assert last.success
        switch = check_result(last, "model_switch")
        assert switch.passed and "switched to 'books__v2'" in switch.description
    finally:
        searcher.stop()

    assert searcher.errors == []
    collections = [answer.collection for answer in searcher.answers]
    assert "books" in collections and "books__v2" in collections
    # The old version until the switch, then the new one; each complete when it answered.
    switched_at = collections.index("books__v2")
    assert set(collections[:switched_at]) == {"books"}
    assert set(collections[switched_at:]) == {"books__v2"}
    complete = (FILES - 1) * BOOKS_PER_FILE  # the deletion, before the new file is loaded
    assert all(answer.points >= complete and answer.hits == 3 for answer in searcher.answers)

    assert deleted.name not in store.points_of("books")
    new_version = store.points_of("books__v2")
    assert deleted.name not in new_version and new_version[added.name] == BOOKS_PER_FILE
    assert sum(new_version.values()) == FILES * BOOKS_PER_FILE
    paid = sum(run_tokens(result) for result in (first, second, last))
    assert paid == estimate["tokens"] + tokens_of(added)

    again = store.run(NEW_MODEL)
    assert again.success
    assert check_result(again, "model_switch").description.startswith("no model change")
    assert cli_json(capsys, "info")["collection"] == "books__v2"


def test_a_failed_gate_keeps_the_old_version_and_a_switch_back_is_one_command(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert store.run(None, books_dir=SAMPLE_BOOKS_DIR).success  # the bundled model
    store.books_dir = SAMPLE_BOOKS_DIR
    store.environment(monkeypatch, OLD_MODEL)

    # The loopback model's vectors are hashes of the texts: the sample probes' own words find
    # less than the bundled model's meaning does.
    failed = store.run(OLD_MODEL)
    assert not failed.success
    message = failure_messages(store.instance, failed.run_id)["switch_to_rebuilt_version"]
    assert "'books' stays current" in message and "at-least-as-many" in message
    with store.versions() as catalog:
        assert catalog.current_name() == "books"
        assert catalog.open("books__v2").count() == catalog.open("books").count() == 45
    # Search answers from the bundled model's version, with the bundled model.
    [top, *_] = cli_json(capsys, "search", "a vampire count travels to England", "--limit", "3")
    assert top["title"] == "Dracula"

    assert "'books__v2' (text-embedding-3-small) is current" in cli_text(
        capsys, "versions", "switch", "2"
    )
    assert cli_json(capsys, "info")["collection"] == "books__v2"
    cli_text(capsys, "versions", "switch", "1")
    rows = {row["collection"]: row["state"] for row in cli_json(capsys, "versions")}
    assert rows == {"books": "current", "books__v2": "rolled back"}

    # The configured model's version was rolled back: runs load nothing and say why.
    refused = store.run(OLD_MODEL)
    assert not refused.success
    assert any(
        "rolled back" in m for m in failure_messages(store.instance, refused.run_id).values()
    )

    assert "would remove 'books__v2'" in cli_text(capsys, "versions", "remove-unused")
    assert "removed 'books__v2'" in cli_text(capsys, "versions", "remove-unused", "--yes")
    with store.versions() as catalog:
        assert catalog.names() == ["books"] and catalog.current_name() == "books"

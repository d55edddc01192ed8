"""Reads only read: `search`, `status`, `info` and `estimate` leave a store that needs an
upgrade exactly as it is, answer dense searches from it and say that the next load upgrades
it; the next real fetch_data run does. On the real Edge store and the real Dagster instance."""

import json
import tarfile
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline import cli
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.settings import EDGE_FOLDER_NAME, LEGACY_FOLDER_NAME
from book_pipeline.core.store.read_only import NEXT_LOAD_UPGRADES
from book_pipeline_tests.support.data_folder import folder_fingerprint
from book_pipeline_tests.support.legacy_store import LEGACY_BOOKS, write_legacy_store
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture
def read_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QDRANT_URL", "BOOK_PIPELINE_COLLECTION", "BOOK_PIPELINE_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(SAMPLE_BOOKS_DIR))


def cli_run(capsys: pytest.CaptureFixture[str], *command: str) -> tuple[str, str]:
    capsys.readouterr()
    assert cli.main(list(command)) == cli.EXIT_OK
    captured = capsys.readouterr()
    return captured.out, captured.err


def store_fingerprint(data_dir: Path) -> dict[str, str]:
    """Every file of the stores but the lock file, which a read takes like a load."""
    return {
        name: digest
        for folder in (EDGE_FOLDER_NAME, LEGACY_FOLDER_NAME)
        if (data_dir / folder).exists()
        for name, digest in folder_fingerprint(data_dir / folder).items()
        if not name.endswith(".lock")
    }


def test_reads_leave_a_shard_of_the_release_before_keyword_vectors_as_it_is(
    data_dir: Path,
    read_env: None,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with tarfile.open(FIXTURES / "previous_release_data.tar.gz") as archive:
        archive.extractall(data_dir, filter="data")
    before = store_fingerprint(data_dir)
    assert any(name.startswith("books/segments/") for name in before)

    hits, search_said = cli_run(capsys, "search", "a detective on a train", "--json")
    status, status_said = cli_run(capsys, "status")
    info, info_said = cli_run(capsys, "info", "--json")
    cli_run(capsys, "estimate")
    capsys.readouterr()
    assert cli.main(["search", "Bram Stoker", "--mode", "keyword"]) == cli.EXIT_REFUSED
    refusal = capsys.readouterr().err

    assert store_fingerprint(data_dir) == before
    assert json.loads(hits)[0]["title"] == "Murder on the Midnight Express"
    assert json.loads(info)["search_modes"] == ["dense"]
    assert status.rstrip().endswith("6 loaded")
    for said in (search_said, status_said, info_said):
        assert NEXT_LOAD_UPGRADES in said
    assert "The next load adds them" in refusal

    loaded = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(SAMPLE_BOOKS_DIR, data_dir), instance=instance
    )

    assert loaded.success
    assert loaded.output_for_node("book_embeddings")["files_processed"] == 0
    info, info_said = cli_run(capsys, "info", "--json")
    assert json.loads(info)["search_modes"] == ["hybrid", "dense", "keyword"]
    assert NEXT_LOAD_UPGRADES not in info_said


def test_reads_use_the_previous_versions_store_in_place(
    data_dir: Path, read_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local-mode store of the version before Edge: read where it is, never copied by a
    read (the next load copies it, test_legacy)."""
    write_legacy_store(data_dir / LEGACY_FOLDER_NAME)
    before = store_fingerprint(data_dir)

    info, said = cli_run(capsys, "info", "--json")

    assert json.loads(info)["points"] == len(LEGACY_BOOKS)
    assert json.loads(info)["search_modes"] == ["dense"]
    assert "the next load copies it into the Qdrant Edge store" in said
    assert not (data_dir / EDGE_FOLDER_NAME / "books").exists()
    assert store_fingerprint(data_dir) == before

"""The removal guard on real runs: the real Dagster instance, the real Edge store, the bundled
model. Too many files gone, or an empty folder, removes nothing, loads what is new and fails
the run on a step of its own; a raised limit or `book-pipeline forget` confirms."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.cli import main
from book_pipeline.core.ingest.ledger import FileState
from book_pipeline.core.ingest.removal_guard import HELD_STATE
from book_pipeline_tests.support.data_folder import point_count, recorded_entries
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config, steps_that_ran
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

BOOKS_PER_FILE = 2
CHECK_STEP = "check_removals_confirmed"


def run(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, limit: int | None = None
) -> dg.ExecuteInProcessResult:
    run_config = fetch_data_run_config(books_dir, data_dir)
    if limit is not None:
        run_config["resources"]["pipeline_state"]["config"]["max_removed_files_per_run"] = limit
    return fetch_data_job().execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )


def guard_failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert [event.step_key for event in failures] == [f"book_embeddings.{CHECK_STEP}"]
    data = failures[0].step_failure_data
    assert data is not None and data.user_failure_data is not None
    return data.user_failure_data.description or ""


@pytest.fixture
def cli_env(books_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "QDRANT_URL",
        "BOOK_PIPELINE_COLLECTION",
        "BOOK_PIPELINE_MAX_REMOVED_FILES_PER_RUN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(books_dir))
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))


def status_states(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    return {row["file_name"]: row["state"] for row in json.loads(capsys.readouterr().out)}


def test_too_many_files_gone_removes_none_loads_the_new_and_fails(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = write_synthetic_books(books_dir, files=12, books_per_file=BOOKS_PER_FILE)
    assert run(instance, books_dir, data_dir).success
    gone = files[:6]
    for path in gone:
        path.unlink()
    write_synthetic_books(books_dir, files=1, books_per_file=BOOKS_PER_FILE, first_file=12)

    held = run(instance, books_dir, data_dir)

    # The run fails on the guard's own step; the load went through: the new file is in, the
    # books of the six that left are all still there.
    assert not held.success
    description = guard_failure(held)
    assert "load_embeddings_to_vector_db" in steps_that_ran(instance, held.run_id)["success"]
    assert point_count(data_dir) == 13 * BOOKS_PER_FILE
    assert "6 file(s)" in description and "BOOK_PIPELINE_MAX_REMOVED_FILES_PER_RUN=6" in description
    assert all(path.name in description for path in gone)
    assert "book-pipeline forget FILE..." in description
    entries = recorded_entries(data_dir)
    assert all(entries[path.name].state is FileState.LOADED for path in gone)
    assert "books_00012.txt" in entries
    states = status_states(capsys)
    assert {name: states[name] for name in (path.name for path in gone)} == dict.fromkeys(
        (path.name for path in gone), HELD_STATE
    )
    # Held again by the next run of the same folder, which has nothing new to load.
    assert not run(instance, books_dir, data_dir).success

    confirmed = run(instance, books_dir, data_dir, limit=6)

    assert confirmed.success
    assert confirmed.output_for_node("book_embeddings")["files_removed"] == 6
    assert point_count(data_dir) == 7 * BOOKS_PER_FILE
    assert all(recorded_entries(data_dir)[path.name].state is FileState.REMOVED for path in gone)


def test_a_few_files_gone_are_removed_without_asking(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    """The default limit: five files, or a tenth of those loaded when that is more."""
    files = write_synthetic_books(books_dir, files=8, books_per_file=BOOKS_PER_FILE)
    assert run(instance, books_dir, data_dir).success
    for path in files[:5]:
        path.unlink()

    result = run(instance, books_dir, data_dir)

    assert result.success
    assert result.output_for_node("book_embeddings")["files_removed"] == 5
    assert point_count(data_dir) == 3 * BOOKS_PER_FILE


def test_an_empty_folder_removes_nothing_whatever_the_limit(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """What a network share that did not mount leaves behind: an empty mount point."""
    write_synthetic_books(books_dir, files=3, books_per_file=BOOKS_PER_FILE)
    assert run(instance, books_dir, data_dir).success
    empty = tmp_path / "unmounted"
    empty.mkdir()

    for limit in (None, 100):
        result = run(instance, empty, data_dir, limit)

        assert not result.success
        description = guard_failure(result)
        assert f"the books folder {empty} is empty" in description
        assert "book-pipeline forget FILE..." in description
        assert point_count(data_dir) == 3 * BOOKS_PER_FILE


def test_forget_removes_the_named_files_books_on_purpose(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = write_synthetic_books(books_dir, files=8, books_per_file=BOOKS_PER_FILE)
    assert run(instance, books_dir, data_dir).success
    moved = books_dir.parent / "moved"
    moved.mkdir()
    for path in files[:7]:
        shutil.move(path, moved / path.name)
    assert not run(instance, books_dir, data_dir).success

    # Refused, nothing removed: a file still in the folder, a file the collection never held.
    assert main(["forget", files[0].name, files[7].name]) == 2
    assert "still in the books folder" in capsys.readouterr().err
    assert main(["forget", files[0].name, "never_loaded.txt"]) == 2
    assert "never_loaded.txt" in capsys.readouterr().err
    assert point_count(data_dir) == 8 * BOOKS_PER_FILE

    assert main(["forget", *(path.name for path in files[:7])]) == 0

    assert point_count(data_dir) == BOOKS_PER_FILE
    entries = recorded_entries(data_dir)
    assert all(entries[path.name].state is FileState.REMOVED for path in files[:7])
    assert status_states(capsys)[files[0].name] == "removed"
    # Nothing is left to hold: the next run succeeds and removes nothing more.
    result = run(instance, books_dir, data_dir)
    assert result.success and result.output_for_node("book_embeddings")["files_removed"] == 0

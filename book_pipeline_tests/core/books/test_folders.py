"""The default books folder: ./books, the bundled samples until it exists, and the switch between
them, from a real load of the samples through add-books to the sensor's next run."""

import os
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline import cli
from book_pipeline.core.books import folders
from book_pipeline.core.books.files import list_book_files, snapshot_book_files
from book_pipeline.core.books.folders import (
    SAMPLE_BOOKS_DIR,
    create_user_books_dir,
    default_books_dir,
    is_sample_folder,
)
from book_pipeline.core.books.parsing import format_book_line, parse_book_file
from book_pipeline.core.ingest.folder_review import review_folder
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.store.base import CollectionStamp
from book_pipeline.defs.resources import (
    BooksFolder,
    EmbedderResource,
    PipelineStateResource,
    folders_run_config,
)
from book_pipeline.defs.sensors import new_book_files_sensor
from book_pipeline_tests.support.data_folder import point_count, qdrant_in
from book_pipeline_tests.support.runs import fetch_data_job, steps_that_ran

NEW_BOOK = format_book_line(1, "The Moonstone", 1868, "Wilkie Collins", "A diamond vanishes.")


@pytest.fixture
def working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with none of the folder variables set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOOK_PIPELINE_BOOKS_DIR", raising=False)
    monkeypatch.delenv("BOOK_PIPELINE_DATA_DIR", raising=False)
    return tmp_path.resolve()


def sample_files_state() -> dict[str, tuple[int, int, bytes]]:
    return {
        path.name: (path.stat().st_size, path.stat().st_mtime_ns, path.read_bytes())
        for path in SAMPLE_BOOKS_DIR.iterdir()
    }


def test_the_samples_stand_in_until_books_exists(working_dir: Path) -> None:
    assert default_books_dir() == SAMPLE_BOOKS_DIR
    assert is_sample_folder(SAMPLE_BOOKS_DIR)

    (working_dir / "books").mkdir()

    assert default_books_dir() == working_dir / "books"
    assert not is_sample_folder(default_books_dir())


def test_books_is_created_with_exact_copies_of_the_samples(working_dir: Path) -> None:
    samples_before = sample_files_state()

    folder, copied = create_user_books_dir()

    assert folder == working_dir / "books"
    assert copied == [path.name for path in list_book_files(SAMPLE_BOOKS_DIR)]
    # Same names, bytes and mtimes: the ledger takes them as the files it loaded, unread.
    assert {
        path.name: (path.stat().st_size, path.stat().st_mtime_ns, path.read_bytes())
        for path in folder.iterdir()
    } == {name: samples_before[name] for name in copied}
    assert folder.stat().st_mode & 0o777 == folders.BOOKS_DIR_MODE
    assert [path.name for path in working_dir.iterdir()] == ["books"]  # no staging left over
    assert sample_files_state() == samples_before


def test_a_books_folder_created_meanwhile_by_another_process_is_kept(
    working_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_process_creates_it_first(folder: Path) -> list[Path]:
        (working_dir / "books").mkdir(exist_ok=True)
        (working_dir / "books" / "theirs.txt").write_text(NEW_BOOK + "\n")
        return list_book_files(folder)

    monkeypatch.setattr(folders, "list_book_files", other_process_creates_it_first)

    assert create_user_books_dir() == (working_dir / "books", [])
    assert [path.name for path in working_dir.iterdir()] == ["books"]
    assert [path.name for path in (working_dir / "books").iterdir()] == ["theirs.txt"]


def test_the_ledger_sees_the_copies_as_the_loaded_samples_without_reading_them(
    working_dir: Path,
) -> None:
    ledger = LoadLedger(working_dir / "data" / "ledger.sqlite")
    stamp = CollectionStamp("generation", 1)
    ledger.record_loaded(
        (parse_book_file(path) for path in list_book_files(SAMPLE_BOOKS_DIR)), "generation", 1
    )
    folder, _ = create_user_books_dir()

    def must_not_read(snapshot: object) -> str:
        raise AssertionError(f"read {snapshot}: size and mtime should have settled it")

    review = review_folder(snapshot_book_files(folder), ledger.entries(stamp), must_not_read)

    assert (review.pending, review.removed, review.up_to_date) == ([], [], 6)


def default_folder_run_config(data_dir: Path) -> dict:
    """Run config for the default books folder: no path, whatever the code location was given."""
    resources = folders_run_config(SAMPLE_BOOKS_DIR, data_dir)
    resources["books_folder"] = {"config": {"path": None}}
    return {"resources": resources}


def test_switching_from_the_samples_to_books_reloads_and_removes_nothing(
    working_dir: Path,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The samples are loaded from the package; add-books creates ./books; the sensor's next
    run loads the new file only, and every sample book stays searchable."""
    data_dir = working_dir / "data"
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    run_config = default_folder_run_config(data_dir)
    first = fetch_data_job().execute_in_process(run_config=run_config, instance=instance)
    assert first.success
    sample_points = point_count(data_dir)

    assert cli.main(["add-books", "new_arrivals", NEW_BOOK]) == cli.EXIT_OK
    created, wrote = capsys.readouterr().out.splitlines()
    assert created.startswith(f"created the books folder {working_dir / 'books'} with copies of ")
    assert "sample books already loaded stay loaded" in created
    assert wrote == f"wrote 1 book to {working_dir / 'books' / 'new_arrivals.txt'}"

    new_file = working_dir / "books" / "new_arrivals.txt"
    past = new_file.stat().st_mtime - 3600  # settled, for the sensor
    os.utime(new_file, (past, past))
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "books_folder": BooksFolder(settle_seconds=60),
            "pipeline_state": PipelineStateResource(data_dir=str(data_dir)),
            "qdrant": qdrant_in(data_dir),
            "embedder": EmbedderResource(),
        },
    ) as context:
        [request] = new_book_files_sensor(context).run_requests
    ops = request.run_config["ops"]["book_embeddings"]["ops"]
    assert ops["list_book_description_files"]["config"]["only_files"] == ["new_arrivals.txt"]

    second = fetch_data_job().execute_in_process(
        run_config={**run_config, "ops": request.run_config["ops"]}, instance=instance
    )

    assert second.success
    ran = steps_that_ran(instance, second.run_id)["success"]
    assert {step.split("[")[0] for step in ran if "[" in step} == {
        "transform_book_description_file",
        "create_vector_embeddings",
    }
    assert len([step for step in ran if "[" in step]) == 2  # one file: one transform, one embed
    assert point_count(data_dir) == sample_points + 1
    # The run's other check, every_file_accepted, has its own tests (test_checks).
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    check = checks["retrieval_sanity"]
    assert check.passed and check.metadata["probe_kind"].value == "sample"

    assert cli.main(["status"]) == cli.EXIT_OK
    status = capsys.readouterr().out
    assert f"books folder: {working_dir / 'books'}\n" in status
    assert status.rstrip().endswith("7 loaded")


@pytest.mark.slow
def test_once_books_of_its_own_are_loaded_a_missing_books_folder_is_an_error(
    working_dir: Path,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mv books books.bak`: the samples do not stand in for it, so none of its books is taken
    for deleted; the run fails at its listing, naming the folder, and so does `status`."""
    data_dir = working_dir / "data"
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    assert cli.main(["add-books", "new_arrivals", NEW_BOOK]) == cli.EXIT_OK
    run_config = default_folder_run_config(data_dir)
    assert fetch_data_job().execute_in_process(run_config=run_config, instance=instance).success
    loaded_points = point_count(data_dir)
    (working_dir / "books").rename(working_dir / "books.bak")
    assert default_books_dir() == SAMPLE_BOOKS_DIR

    moved = fetch_data_job().execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )

    assert not moved.success
    [failure] = [event for event in moved.all_events if event.is_step_failure]
    assert failure.step_key == "book_embeddings.list_book_description_files"
    assert failure.step_failure_data is not None
    message = str(failure.step_failure_data.user_failure_data.description)
    assert f"the books folder {working_dir / 'books'} does not exist" in message
    assert "new_arrivals.txt" in message
    assert point_count(data_dir) == loaded_points
    capsys.readouterr()
    assert cli.main(["status"]) == cli.EXIT_REFUSED
    assert f"the books folder {working_dir / 'books'} does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_samples_stand_in_while_the_collection_holds_only_sample_books(
    working_dir: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded from the package, then from `./books` (created by add-books, samples only), then
    `./books` deleted: the samples stand in again, nothing to load, nothing removed."""
    data_dir = working_dir / "data"
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    run_config = default_folder_run_config(data_dir)
    assert fetch_data_job().execute_in_process(run_config=run_config, instance=instance).success
    sample_points = point_count(data_dir)
    create_user_books_dir()
    assert fetch_data_job().execute_in_process(run_config=run_config, instance=instance).success
    for path in (working_dir / "books").iterdir():
        path.unlink()
    (working_dir / "books").rmdir()

    again = fetch_data_job().execute_in_process(run_config=run_config, instance=instance)

    assert again.success
    assert again.output_for_node("book_embeddings")["files_processed"] == 0
    assert point_count(data_dir) == sample_points

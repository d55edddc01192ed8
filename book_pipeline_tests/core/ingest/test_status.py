"""`book-pipeline status` after real fetch_data runs."""

import json
import time
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.cli import main
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline_tests.support.data_folder import hold_store_open, qdrant_in, record_as_loaded
from book_pipeline_tests.support.embedders import unit_vectors
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config
from book_pipeline_tests.support.synthetic_books import write_synthetic_books


@pytest.fixture
def pipeline_env(books_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads the test's books and data folders."""
    monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(books_dir))
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))


def status_table(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["status"]) == 0
    return capsys.readouterr().out


def status_rows(capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    assert main(["status", "--json"]) == 0
    return {row["file_name"]: row for row in json.loads(capsys.readouterr().out)}


def test_status_lists_loaded_pending_failed_and_deleted_files(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    pipeline_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded, deleted = write_synthetic_books(books_dir, files=2, books_per_file=3)
    run_config = fetch_data_run_config(books_dir, data_dir)
    assert fetch_data_job().execute_in_process(run_config=run_config, instance=instance).success
    (books_dir / "broken.txt").write_text("1 ::: No Year ::: A ::: B\n")
    assert (
        not fetch_data_job()
        .execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
        .success
    )
    [pending] = write_synthetic_books(books_dir, files=1, books_per_file=1, first_file=2)
    deleted.unlink()

    rows = status_rows(capsys)

    assert rows[loaded.name]["state"] == "loaded"
    assert rows[loaded.name]["books"] == 3
    assert rows[pending.name]["state"] == "pending"
    assert rows["broken.txt"]["state"] == "failed"
    assert rows["broken.txt"]["error_line"] == 1
    assert "expected '<Title> (<Year>)'" in rows["broken.txt"]["error"]
    assert rows[deleted.name]["state"] == "deleted, books not yet removed"

    assert fetch_data_job().execute_in_process(run_config=run_config, instance=instance).success
    rows = status_rows(capsys)
    assert rows[pending.name]["state"] == "loaded"
    assert (rows[deleted.name]["state"], rows[deleted.name]["books"]) == ("removed", 0)

    table = status_table(capsys)
    assert f"books folder: {books_dir}" in table
    assert "1 failed, 2 loaded, 1 removed" in table


def test_status_counts_each_files_books_in_the_store_and_names_drift(
    books_dir: Path,
    data_dir: Path,
    pipeline_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The record says two files are loaded; the store holds one of them: status says so."""
    held, lost = write_synthetic_books(books_dir, files=2, books_per_file=3)
    record_as_loaded(data_dir, [held, lost])
    with qdrant_in(data_dir).open() as store:
        parsed = parse_book_file(held)
        store.upsert_books(parsed.books, unit_vectors(3, 384), parsed.sha256)

    rows = status_rows(capsys)

    assert (rows[held.name]["state"], rows[held.name]["books"], rows[held.name]["stored"]) == (
        "loaded",
        3,
        3,
    )
    assert (rows[lost.name]["state"], rows[lost.name]["books"], rows[lost.name]["stored"]) == (
        "pending",
        3,
        0,
    )
    assert "recorded as 3 book(s) loaded, the store holds 0" in rows[lost.name]["drift"]
    table = status_table(capsys)
    assert f"store: Qdrant collection 'books' at {data_dir / 'qdrant-edge' / 'books'}" in table
    assert "1 file(s) recorded as loaded are not held by the store as recorded" in table


def test_status_shows_the_record_alone_while_a_load_holds_the_store(
    books_dir: Path,
    data_dir: Path,
    pipeline_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = write_synthetic_books(books_dir, files=2, books_per_file=2)
    record_as_loaded(data_dir, files)
    holder = hold_store_open(data_dir / "qdrant-edge", 60)
    try:
        started = time.perf_counter()
        assert main(["status", "--json"]) == 0
        elapsed = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    output = capsys.readouterr()
    rows = json.loads(output.out)

    assert {row["state"] for row in rows} == {"loaded"}
    assert {row["stored"] for row in rows} == {None}
    assert "a running load holds the embedded store" in output.err
    assert elapsed < 5

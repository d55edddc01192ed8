"""book_embeddings end to end: real Dagster runs, the real local model, a real embedded Qdrant."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.cli import main
from book_pipeline.core.books.files import mapping_key_for
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_DIMENSION, LOCAL_MODEL_NAME
from book_pipeline.core.ingest.ledger import FileState
from book_pipeline.core.runtime.run_leases import read_leases
from book_pipeline.defs.assets import book_embeddings, book_embeddings_kinds
from book_pipeline_tests.support.data_folder import point_count, qdrant_in, recorded_entries
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.runs import (
    failure_messages,
    fetch_data_job,
    fetch_data_run_config,
    materialization_metadata,
    steps_that_ran,
)
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

BROKEN_LINE = "99 ::: A Title Without Its Year ::: Someone ::: Text"


def run_fetch_data(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> dg.ExecuteInProcessResult:
    return fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(books_dir, data_dir),
        instance=instance,
        raise_on_error=False,
    )


def checks_evaluated(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """The asset checks the run evaluated: name -> passed."""
    evaluations = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {
        entry.get_dagster_event().event_specific_data.check_name: (
            entry.get_dagster_event().event_specific_data.passed
        )
        for entry in evaluations
    }


def stored_points(data_dir: Path) -> dict[str, dict]:
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(1000)
    return {str(point.id): point.payload for point in points}


# The steps of a run whatever its files: the listing, the load and the refusal fan-out with the
# check that no file was refused, and the check that every removal was made.
PER_RUN_STEPS = {
    "list_book_description_files",
    "list_refused_book_files",
    "list_over_budget_book_files",
    "load_embeddings_to_vector_db",
    "switch_to_rebuilt_version",
    "check_every_file_accepted",
    "check_removals_confirmed",
}


def test_sample_data_end_to_end(instance: dg.DagsterInstance, data_dir: Path) -> None:
    sample_files = sorted(SAMPLE_BOOKS_DIR.glob("*.txt"))
    sample_books = sum(len(parse_book_file(path).books) for path in sample_files)

    result = run_fetch_data(instance, SAMPLE_BOOKS_DIR, data_dir)

    assert result.success
    steps = steps_that_ran(instance, result.run_id)
    # Nothing refused: no skipped step, whatever the number of files.
    assert steps["skipped"] == set()
    assert steps["success"] >= PER_RUN_STEPS
    assert checks_evaluated(instance, result.run_id) == {
        "retrieval_sanity": True,
        "every_file_accepted": True,
        "every_removal_confirmed": True,
        "model_switch": True,
    }
    for path in sample_files:
        key = mapping_key_for(path.name)
        assert f"transform_book_description_file[{key}]" in steps["success"]
        assert f"create_vector_embeddings[{key}]" in steps["success"]
    assert point_count(data_dir) == sample_books
    metadata = materialization_metadata(instance)
    assert metadata["files_processed"] == len(sample_files)
    assert metadata["books_loaded"] == sample_books
    assert metadata["collection_size"] == sample_books
    assert metadata["embedding_model"] == LOCAL_MODEL_NAME
    assert metadata["embedding_dimension"] == LOCAL_MODEL_DIMENSION
    for stage in ("transform_book_description_file", "create_vector_embeddings"):
        assert metadata[f"seconds_{stage}"] > 0
    # The local model is billed by no one: its cost is its compute time.
    assert metadata["embedding_compute_seconds"] > 0
    assert metadata["embedding_cost_usd"] == 0.0
    assert metadata["embedding_texts_from_cache"] == 0
    assert "embedding_tokens" not in metadata


def test_points_carry_the_book_payload(instance: dg.DagsterInstance, data_dir: Path) -> None:
    assert run_fetch_data(instance, SAMPLE_BOOKS_DIR, data_dir).success
    first_file = sorted(SAMPLE_BOOKS_DIR.glob("*.txt"))[0]
    first_book = parse_book_file(first_file).books[0]
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(1000, with_vectors=True)
    [point] = [
        p
        for p in points
        if p.payload["source_file"] == first_file.name
        and p.payload["book_index"] == first_book.index
    ]
    assert point.payload["title"] == first_book.title
    assert point.payload["author"] == first_book.author
    assert point.payload["year"] == first_book.year
    assert point.payload["description"] == first_book.description
    assert point.payload["line_number"] == first_book.line_number
    assert point.payload["content_hash"] == first_book.content_hash
    assert len(point.vector) == LOCAL_MODEL_DIMENSION


def test_zero_files_maps_nothing_and_succeeds(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    result = run_fetch_data(instance, books_dir, data_dir)

    assert result.success
    steps = steps_that_ran(instance, result.run_id)
    assert steps["success"] == PER_RUN_STEPS
    assert steps["failure"] == steps["skipped"] == set()
    assert result.output_for_node("book_embeddings")["files_processed"] == 0
    assert materialization_metadata(instance)["books_loaded"] == 0


def test_one_malformed_file_fails_only_its_own_step(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The good files of the run load (Airflow's all_done), the refused one fails on its own."""
    good_files = write_synthetic_books(books_dir, files=3, books_per_file=2)
    broken = books_dir / "broken file.txt"
    broken.write_text(good_files[0].read_text() + BROKEN_LINE + "\n")
    broken_bytes = broken.read_bytes()

    result = run_fetch_data(instance, books_dir, data_dir)

    assert not result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    steps = steps_that_ran(instance, result.run_id)
    broken_key = mapping_key_for(broken.name)
    assert steps["failure"] == {f"refuse_book_description_file[{broken_key}]"}
    assert f"transform_book_description_file[{broken_key}]" in steps["success"]
    # The one step a refusal adds: the file's embed copy, with nothing to embed.
    assert steps["skipped"] == {f"create_vector_embeddings[{broken_key}]"}
    for path in good_files:
        key = mapping_key_for(path.name)
        assert f"transform_book_description_file[{key}]" in steps["success"]
        assert f"create_vector_embeddings[{key}]" in steps["success"]
    assert "load_embeddings_to_vector_db" in steps["success"]
    assert {book["source_file"] for book in stored_points(data_dir).values()} == {
        path.name for path in good_files
    }
    assert point_count(data_dir) == 2 * len(good_files)
    [failure] = [event for event in result.all_events if event.is_step_failure]
    user_data = failure.step_failure_data.user_failure_data
    message = user_data.description
    assert message.startswith("broken file.txt, line 3: expected '<Title> (<Year>)'")
    assert (user_data.metadata["file"].value, user_data.metadata["line"].value) == (
        str(broken),
        3,
    )
    assert broken.read_bytes() == broken_bytes

    entry = recorded_entries(data_dir)[broken.name]
    assert (entry.state, entry.error, entry.error_line) == (FileState.FAILED, message, 3)
    monkeypatch.setenv("BOOK_PIPELINE_BOOKS_DIR", str(books_dir))
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(data_dir))
    assert main(["status"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("broken")]
    assert row.split()[:3] == ["broken", "file.txt", "failed"] and message in row

    metadata = materialization_metadata(instance)
    assert metadata["files_processed"] == len(good_files)
    assert metadata["failed_files"] == {broken.name: message}
    # The loaded books are checked, so are the removals (none); the check that no file was
    # refused cannot run.
    assert checks_evaluated(instance, result.run_id) == {
        "retrieval_sanity": True,
        "every_removal_confirmed": True,
        "model_switch": True,
    }


def test_a_run_where_every_file_is_refused_loads_nothing(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=2)
    loaded = run_fetch_data(instance, books_dir, data_dir)
    assert loaded.success
    points_before = stored_points(data_dir)
    (books_dir / "no year.txt").write_text(BROKEN_LINE + "\n")
    (books_dir / "empty.txt").write_text("")

    result = run_fetch_data(instance, books_dir, data_dir)

    assert not result.success
    steps = steps_that_ran(instance, result.run_id)
    assert steps["failure"] == {
        f"refuse_book_description_file[{mapping_key_for(name)}]"
        for name in ("no year.txt", "empty.txt")
    }
    assert "load_embeddings_to_vector_db" in steps["skipped"]
    assert stored_points(data_dir) == points_before
    latest = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))
    assert latest is not None and latest.run_id == loaded.run_id
    assert checks_evaluated(instance, result.run_id) == {}


@dataclass(frozen=True)
class Reexecuted:
    broken: Path
    first_run_id: str
    reexecution_run_id: str


def refuse_then_reexecute_from_failure(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, fixed_line: str | None
) -> Reexecuted:
    """A run of 3 good files (6 books) and a refused one; the file fixed with `fixed_line` (or
    not), then the run re-executed from failure."""
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    broken = books_dir / "späte lieferung.txt"
    broken.write_text(BROKEN_LINE + "\n")
    run_config = fetch_data_run_config(books_dir, data_dir)
    job = dg.reconstructable(fetch_data_job)
    with dg.execute_job(job, instance, run_config=run_config) as first:
        assert not first.success
    assert point_count(data_dir) == 6
    if fixed_line is not None:
        broken.write_text(fixed_line + "\n")
    with dg.execute_job(
        job,
        instance,
        run_config=run_config,
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
    ) as reexecution:
        assert not reexecution.success
    return Reexecuted(broken, first.run_id, reexecution.run_id)


def test_reexecution_from_failure_without_a_fix_fails_the_same_way_and_embeds_nothing(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    runs = refuse_then_reexecute_from_failure(instance, books_dir, data_dir, fixed_line=None)

    # Only the failed refusal step runs again, from the first run's stored refusal: nothing is
    # listed, parsed, embedded or loaded, and the error is the same.
    refusal_step = f"refuse_book_description_file[{mapping_key_for(runs.broken.name)}]"
    assert steps_that_ran(instance, runs.reexecution_run_id) == {
        "success": set(),
        "failure": {refusal_step},
        "skipped": set(),
    }
    assert failure_messages(instance, runs.reexecution_run_id) == failure_messages(
        instance, runs.first_run_id
    )
    assert point_count(data_dir) == 6


def test_a_fixed_file_is_loaded_once_by_the_next_run(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    fixed = "99 ::: A Title With Its Year (2024) ::: Someone ::: Text"
    runs = refuse_then_reexecute_from_failure(instance, books_dir, data_dir, fixed_line=fixed)
    broken = runs.broken

    # A re-execution reuses the first run's refusal, so it cannot load the new version: it
    # says the file has changed and where to go.
    [message] = failure_messages(instance, runs.reexecution_run_id).values()
    assert message.startswith("späte lieferung.txt, line 1: expected '<Title> (<Year>)'")
    assert "späte lieferung.txt has changed since it was refused" in message
    assert "start a new run" in message
    assert point_count(data_dir) == 6

    second = run_fetch_data(instance, books_dir, data_dir)

    assert second.success
    key = mapping_key_for(broken.name)
    assert steps_that_ran(instance, second.run_id)["success"] == PER_RUN_STEPS | {
        f"transform_book_description_file[{key}]",
        f"create_vector_embeddings[{key}]",
    }
    assert point_count(data_dir) == 6 + 1
    third = run_fetch_data(instance, books_dir, data_dir)
    assert steps_that_ran(instance, third.run_id)["success"] == PER_RUN_STEPS
    assert point_count(data_dir) == 6 + 1


def test_rerun_on_same_files_keeps_the_point_count(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=3)
    assert run_fetch_data(instance, books_dir, data_dir).success
    assert run_fetch_data(instance, books_dir, data_dir).success
    assert point_count(data_dir) == 6


def test_a_collection_of_another_model_is_rebuilt_beside_it_never_written_into(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    """Another model's vectors (here of another dimension) cannot share a collection: the run
    builds the configured model's version beside it (docs/operations.md, "Changing the
    embedding model"), and switches to it, since the old one finds nothing."""
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    with qdrant_in(data_dir).open() as store:
        store.ensure_collection(dimension=8, model_name="some-other-model")

    result = run_fetch_data(instance, books_dir, data_dir)

    assert result.success
    with qdrant_in(data_dir).open_versions() as catalog:
        assert catalog.open("books").collection_model() == (8, "some-other-model")
        assert catalog.open("books").count() == 0
        assert catalog.open("books__v2").collection_model() == (
            LOCAL_MODEL_DIMENSION,
            LOCAL_MODEL_NAME,
        )
        assert catalog.current_name() == "books__v2"
    assert point_count(data_dir) == 2


def test_input_files_are_never_changed(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=2)
    (books_dir / "notes.md").write_text("not a book file")
    snapshot = tmp_path / "snapshot"
    shutil.copytree(books_dir, snapshot, copy_function=shutil.copy2)

    assert run_fetch_data(instance, books_dir, data_dir).success

    for original in snapshot.iterdir():
        current = books_dir / original.name
        assert current.read_bytes() == original.read_bytes()
        assert current.stat().st_mtime_ns == original.stat().st_mtime_ns
    assert sorted(p.name for p in books_dir.iterdir()) == sorted(p.name for p in snapshot.iterdir())


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_executor_is_chosen_by_run_config(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, executor: str
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=2)
    run_config = fetch_data_run_config(books_dir, data_dir)
    if executor == "multiprocess":
        run_config["execution"] = {"config": {"multiprocess": {"max_concurrent": 2}}}
    with dg.execute_job(
        dg.reconstructable(fetch_data_job), instance, run_config=run_config
    ) as result:
        assert result.success
        step_pids = {
            event.pid
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.STEP_START
        }
    assert point_count(data_dir) == 4
    # In-process: every step in the run's own process; multiprocess: one child per step.
    assert (len(step_pids) == 1) == (executor == "in_process")
    # The run's own process held the run's lease (defs/executors.py), as did the step processes
    # that use the pipeline state.
    holders = {lease.holder.pid for lease in read_leases(data_dir, result.run_id)}
    assert os.getpid() in holders
    assert holders <= {os.getpid()} | step_pids


def test_openai_provider_end_to_end_with_key_from_environment(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planted_key = "sk-planted-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", planted_key)
    write_synthetic_books(books_dir, files=2, books_per_file=3)
    state = EmbeddingsServerState(dimensions=16, failures_to_inject=[429])

    with embeddings_server(state) as base_url:
        result = fetch_data_job().execute_in_process(
            run_config=fetch_data_run_config(
                books_dir, data_dir, provider="openai", openai_base_url=base_url
            ),
            instance=instance,
        )

    assert result.success
    assert set(state.authorization_headers) == {f"Bearer {planted_key}"}
    # The dimension comes from the vectors: no request only to learn it.
    assert ["dimension probe"] not in [request["input"] for request in state.requests]
    assert 429 in state.statuses
    metadata = materialization_metadata(instance)
    assert metadata["embedding_model"] == "text-embedding-3-small"
    assert metadata["embedding_dimension"] == 16
    assert point_count(data_dir) == 6
    event_log = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert planted_key not in event_log
    assert planted_key not in str(instance.get_run_by_id(result.run_id).run_config)


def test_loaded_unchanged_files_get_no_step(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=3, books_per_file=2)
    assert run_fetch_data(instance, books_dir, data_dir).success
    [new_file] = write_synthetic_books(books_dir, files=1, books_per_file=2, first_file=3)

    second = run_fetch_data(instance, books_dir, data_dir)

    key = mapping_key_for(new_file.name)
    assert steps_that_ran(instance, second.run_id)["success"] == PER_RUN_STEPS | {
        f"transform_book_description_file[{key}]",
        f"create_vector_embeddings[{key}]",
    }
    assert point_count(data_dir) == 8


def test_editing_one_line_reembeds_exactly_one_book(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    [path] = write_synthetic_books(books_dir, files=1, books_per_file=5)
    assert run_fetch_data(instance, books_dir, data_dir).success
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + " Now with an epilogue."
    path.write_text("\n".join(lines[:4]) + "\n")  # edit line 3, drop line 5

    assert run_fetch_data(instance, books_dir, data_dir).success

    metadata = materialization_metadata(instance)
    assert (metadata["embedding_cache_hits"], metadata["embedding_cache_misses"]) == (3, 1)
    assert point_count(data_dir) == 4
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(10)
    descriptions = {point.payload["line_number"]: point.payload["description"] for point in points}
    assert descriptions[3].endswith("Now with an epilogue.")
    assert sorted(descriptions) == [1, 2, 3, 4]


@pytest.mark.parametrize("remove_books", [True, False])
def test_deleted_file_books_are_removed_or_kept(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, remove_books: bool
) -> None:
    kept, deleted = write_synthetic_books(books_dir, files=2, books_per_file=3)
    assert run_fetch_data(instance, books_dir, data_dir).success
    deleted.unlink()
    run_config = fetch_data_run_config(books_dir, data_dir)
    run_config["ops"] = {
        "book_embeddings": {
            "ops": {
                "load_embeddings_to_vector_db": {
                    "config": {"remove_books_of_deleted_files": remove_books}
                }
            }
        }
    }

    result = fetch_data_job().execute_in_process(run_config=run_config, instance=instance)

    assert result.success
    assert materialization_metadata(instance)["files_removed"] == 1
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(10)
    sources = sorted(point.payload["source_file"] for point in points)
    expected = [kept.name] * 3 + ([] if remove_books else [deleted.name] * 3)
    assert sources == sorted(expected)


def test_a_failed_file_does_not_block_later_runs(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    broken = books_dir / "broken.txt"
    broken.write_text(BROKEN_LINE + "\n")
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    assert not run_fetch_data(instance, books_dir, data_dir).success
    [new_file] = write_synthetic_books(books_dir, files=1, books_per_file=2, first_file=1)

    second = run_fetch_data(instance, books_dir, data_dir)

    assert second.success
    ran = steps_that_ran(instance, second.run_id)["success"]
    assert f"transform_book_description_file[{mapping_key_for(broken.name)}]" not in ran
    assert f"transform_book_description_file[{mapping_key_for(new_file.name)}]" in ran
    assert point_count(data_dir) == 4
    metadata = materialization_metadata(instance)
    assert metadata["failed_files_skipped"] == 1
    assert "line 1: expected '<Title> (<Year>)'" in metadata["failed_files"]["broken.txt"]

    broken.write_text("99 ::: Fixed At Last (2024) ::: Someone ::: Text\n")
    assert run_fetch_data(instance, books_dir, data_dir).success
    assert point_count(data_dir) == 5


def test_kinds_name_the_local_model_by_default_and_openai_only_when_configured() -> None:
    """The kinds the UI shows, with BOOK_PIPELINE_EMBEDDER unset (as in the tests) and set; the
    set case as the code location loads it: book_pipeline_tests/test_dg.py."""
    [spec] = book_embeddings.specs
    assert spec.kinds == {"onnx", "qdrant"}
    assert book_embeddings_kinds("openai") == {"openai", "qdrant"}

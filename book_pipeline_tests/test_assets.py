"""book_embeddings end to end: real Dagster runs, the real local model, a real embedded Qdrant."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.book_files import mapping_key_for
from book_pipeline.embedding import LOCAL_MODEL_DIMENSION, LOCAL_MODEL_NAME
from book_pipeline.parsing import parse_book_file
from book_pipeline.resources import SAMPLE_BOOKS_DIR
from book_pipeline.synthetic_books import write_synthetic_books
from book_pipeline_tests.conftest import (
    fetch_data_job,
    fetch_data_run_config,
    point_count,
    qdrant_in,
    steps_that_ran,
)
from book_pipeline_tests.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)

BROKEN_LINE = "99 ::: A Title Without Its Year ::: Someone ::: Text"


def run_fetch_data(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> dg.ExecuteInProcessResult:
    return fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(books_dir, data_dir),
        instance=instance,
        raise_on_error=False,
    )


def materialization_metadata(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))
    assert event is not None and event.asset_materialization is not None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def test_sample_data_end_to_end(instance: dg.DagsterInstance, data_dir: Path) -> None:
    sample_files = sorted(SAMPLE_BOOKS_DIR.glob("*.txt"))
    sample_books = sum(len(parse_book_file(path).books) for path in sample_files)

    result = run_fetch_data(instance, SAMPLE_BOOKS_DIR, data_dir)

    assert result.success
    steps = steps_that_ran(instance, result.run_id)
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
    assert steps["success"] == {"list_book_description_files", "load_embeddings_to_vector_db"}
    assert result.output_for_node("book_embeddings")["files_processed"] == 0
    assert materialization_metadata(instance)["books_loaded"] == 0


def test_one_malformed_file_fails_only_its_own_step(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    good_files = write_synthetic_books(books_dir, files=3, books_per_file=2)
    broken = books_dir / "broken file.txt"
    broken.write_text(good_files[0].read_text() + BROKEN_LINE + "\n")
    broken_bytes = broken.read_bytes()

    result = run_fetch_data(instance, books_dir, data_dir)

    assert not result.success
    steps = steps_that_ran(instance, result.run_id)
    broken_key = mapping_key_for(broken.name)
    assert steps["failure"] == {f"transform_book_description_file[{broken_key}]"}
    for path in good_files:
        key = mapping_key_for(path.name)
        assert f"transform_book_description_file[{key}]" in steps["success"]
        assert f"create_vector_embeddings[{key}]" in steps["success"]
    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("broken file.txt, line 3: expected '<Title> (<Year>)'")
    assert broken.read_bytes() == broken_bytes


def test_reexecution_from_failure_reruns_only_the_fixed_file(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    good_files = write_synthetic_books(books_dir, files=3, books_per_file=2)
    broken = books_dir / "späte lieferung.txt"
    broken.write_text(BROKEN_LINE + "\n")
    run_config = fetch_data_run_config(books_dir, data_dir)
    job = dg.reconstructable(fetch_data_job)
    with dg.execute_job(job, instance, run_config=run_config) as first:
        assert not first.success

    broken.write_text("99 ::: A Title With Its Year (2024) ::: Someone ::: Text\n")
    with dg.execute_job(
        job,
        instance,
        run_config=run_config,
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
    ) as second:
        assert second.success
        rerun_steps = steps_that_ran(instance, second.run_id)["success"]

    key = mapping_key_for(broken.name)
    assert rerun_steps == {
        f"transform_book_description_file[{key}]",
        f"create_vector_embeddings[{key}]",
        "load_embeddings_to_vector_db",
    }
    assert point_count(data_dir) == 2 * len(good_files) + 1


def test_rerun_on_same_files_keeps_the_point_count(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=2, books_per_file=3)
    assert run_fetch_data(instance, books_dir, data_dir).success
    assert run_fetch_data(instance, books_dir, data_dir).success
    assert point_count(data_dir) == 6


def test_dimension_mismatch_is_a_clear_error(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    with qdrant_in(data_dir).open() as store:
        store.ensure_collection(dimension=8, model_name="some-other-model")

    result = run_fetch_data(instance, books_dir, data_dir)

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "book_embeddings.load_embeddings_to_vector_db"
    message = failure.step_failure_data.error.to_string()
    assert "holds 8-dimensional vectors (some-other-model)" in message
    assert f"makes {LOCAL_MODEL_DIMENSION}-dimensional ones" in message
    assert point_count(data_dir) == 0


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
    assert steps_that_ran(instance, second.run_id)["success"] == {
        "list_book_description_files",
        f"transform_book_description_file[{key}]",
        f"create_vector_embeddings[{key}]",
        "load_embeddings_to_vector_db",
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

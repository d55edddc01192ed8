"""Step retries: an embedding endpoint that fails for a while, and one that is down for good.

Real fetch_data runs against the openai client and a loopback OpenAI-compatible server. The
tests' retry delay is ~0.05 s (book_pipeline_tests/__init__.py); the policy is the real one.
"""

import socket
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.core.books.files import mapping_key_for
from book_pipeline.core.ingest.ledger import FileState
from book_pipeline.core.settings import VARIABLES
from book_pipeline.defs.ops import (
    create_vector_embeddings,
    load_embeddings_to_vector_db,
    transform_book_description_file,
)
from book_pipeline.defs.retries import EXTERNAL_STEP_RETRY_POLICY, external_step_retry_policy
from book_pipeline_tests.support.data_folder import qdrant_in, recorded_entries
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)
from book_pipeline_tests.support.runs import fetch_data_job, openai_run_config, steps_that_ran
from book_pipeline_tests.support.synthetic_books import write_synthetic_books


def run_with_openai(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    base_url: str,
    client_retries: int = 0,
) -> dg.ExecuteInProcessResult:
    return fetch_data_job().execute_in_process(
        run_config=openai_run_config(
            books_dir, data_dir, base_url, openai_max_retries=client_retries
        ),
        instance=instance,
        raise_on_error=False,
    )


def events_of(
    instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType
) -> list[dg.EventLogEntry]:
    return list(instance.all_logs(run_id, of_type=event_type))


def closed_loopback_url() -> str:
    """An OpenAI base URL on a loopback port that nothing listens on: the endpoint is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def stored_points(data_dir: Path) -> dict[str, tuple[str, str]]:
    """Every point of the collection: id -> (source file, content hash)."""
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(1000)
    return {
        str(point.id): (point.payload["source_file"], point.payload["content_hash"])
        for point in points
    }


def loaded_files(data_dir: Path) -> set[str]:
    entries = recorded_entries(data_dir)
    return {name for name, entry in entries.items() if entry.state is FileState.LOADED}


def test_retry_policy_defaults_and_environment() -> None:
    default = external_step_retry_policy({})
    assert (default.max_retries, default.delay) == (VARIABLES.step_retries.default, 2.0)
    assert VARIABLES.retry_delay_seconds.default == 2.0
    assert default.backoff is dg.Backoff.EXPONENTIAL
    assert default.jitter is dg.Jitter.PLUS_MINUS

    configured = external_step_retry_policy(
        {VARIABLES.step_retries.name: "5", VARIABLES.retry_delay_seconds.name: "0.5"}
    )
    assert (configured.max_retries, configured.delay) == (5, 0.5)
    assert external_step_retry_policy({VARIABLES.step_retries.name: "0"}).max_retries == 0
    for bad in ({VARIABLES.step_retries.name: "three"}, {VARIABLES.retry_delay_seconds.name: "-1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            external_step_retry_policy(bad)


def test_only_the_steps_that_talk_to_other_systems_are_retried() -> None:
    assert create_vector_embeddings.retry_policy == EXTERNAL_STEP_RETRY_POLICY
    assert load_embeddings_to_vector_db.retry_policy == EXTERNAL_STEP_RETRY_POLICY
    # A malformed file cannot heal: no policy, and its Failure says allow_retries=False.
    assert transform_book_description_file.retry_policy is None


def test_endpoint_answering_429_and_500_then_succeeding(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    [path] = write_synthetic_books(books_dir, files=1, books_per_file=3)
    # With one client retry per attempt: two attempts fail (429 then 500), the third succeeds.
    state = EmbeddingsServerState(failures_to_inject=[429, 500, 429, 500])

    with embeddings_server(state) as base_url:
        result = run_with_openai(instance, books_dir, data_dir, base_url, client_retries=1)

    assert result.success
    assert state.statuses[:5] == [429, 500, 429, 500, 200]
    assert len(stored_points(data_dir)) == 3
    assert loaded_files(data_dir) == {path.name}

    embed_step = f"book_embeddings.create_vector_embeddings[{mapping_key_for(path.name)}]"
    up_for_retry = events_of(instance, result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    restarted = events_of(instance, result.run_id, dg.DagsterEventType.STEP_RESTARTED)
    assert [entry.step_key for entry in up_for_retry] == [embed_step, embed_step]
    assert [entry.step_key for entry in restarted] == [embed_step, embed_step]
    [retry_error, _] = [entry.dagster_event.event_specific_data.error for entry in up_for_retry]
    # The retry event carries the error, with the endpoint and the status.
    assert f"embedding endpoint {base_url}/embeddings answered 500" in retry_error.to_string()
    # Every error answer, the client's own retries included, is a warning in the run's log.
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event is None and entry.step_key == embed_step
    ]
    for status in ("429 Too Many Requests", "500 Internal Server Error"):
        expected = f"embedding endpoint {base_url}/embeddings answered {status}"
        assert sum(expected in message for message in warnings) == 2


@pytest.mark.parametrize("outage", ["nothing listening", "503 forever"])
def test_endpoint_down_for_good_fails_clearly_and_loses_nothing(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, outage: str
) -> None:
    [first] = write_synthetic_books(books_dir, files=1, books_per_file=2)
    with embeddings_server(EmbeddingsServerState()) as base_url:
        assert run_with_openai(instance, books_dir, data_dir, base_url).success
    points_before = stored_points(data_dir)
    [second] = write_synthetic_books(books_dir, files=1, books_per_file=3, first_file=1)

    state = EmbeddingsServerState(failures_to_inject=[503] * 100)
    with embeddings_server(state) as live_url:
        down_url = closed_loopback_url() if outage == "nothing listening" else live_url
        failed = run_with_openai(instance, books_dir, data_dir, down_url)

    assert not failed.success
    embed_step = f"create_vector_embeddings[{mapping_key_for(second.name)}]"
    steps = steps_that_ran(instance, failed.run_id)
    assert steps["failure"] == {embed_step}
    assert "load_embeddings_to_vector_db" not in steps["success"]
    retries = events_of(instance, failed.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == EXTERNAL_STEP_RETRY_POLICY.max_retries
    [failure] = [event for event in failed.all_events if event.is_step_failure]
    # The final failure is Dagster's "Exceeded max_retries", caused by the endpoint's error.
    message = failure.step_failure_data.error.to_string()
    assert f"the embedding endpoint {down_url}/embeddings" in message
    assert ("could not be reached" if outage == "nothing listening" else "answered 503") in message
    # Nothing lost, nothing half-done: the store and the ledger are as the first run left them.
    assert stored_points(data_dir) == points_before
    assert loaded_files(data_dir) == {first.name}

    with embeddings_server(EmbeddingsServerState()) as base_url:
        later = run_with_openai(instance, books_dir, data_dir, base_url)

    assert later.success
    assert loaded_files(data_dir) == {first.name, second.name}
    points_after = stored_points(data_dir)
    assert len(points_after) == 5
    assert points_before.items() <= points_after.items()


def test_reexecution_after_an_outage_retries_and_parses_nothing_again(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    files = write_synthetic_books(books_dir, files=2, books_per_file=2)
    job = dg.reconstructable(fetch_data_job)
    down = openai_run_config(books_dir, data_dir, closed_loopback_url(), openai_max_retries=0)
    with dg.execute_job(job, instance, run_config=down) as first:
        assert not first.success
    embed_steps = {f"create_vector_embeddings[{mapping_key_for(path.name)}]" for path in files}
    assert steps_that_ran(instance, first.run_id)["failure"] == embed_steps

    state = EmbeddingsServerState(failures_to_inject=[503])
    with embeddings_server(state) as base_url:
        back = openai_run_config(books_dir, data_dir, base_url, openai_max_retries=0)
        with dg.execute_job(
            job,
            instance,
            run_config=back,
            reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
        ) as second:
            assert second.success

    # The parsed files come from the first run; the embed steps run again, and retry there too,
    # and so do the steps after them: the load, and the budget's fan-out before the check.
    assert steps_that_ran(instance, second.run_id)["success"] == {
        *embed_steps,
        "load_embeddings_to_vector_db",
        "switch_to_rebuilt_version",
        "list_over_budget_book_files",
        "check_every_file_accepted",
        "check_removals_confirmed",
    }
    retried = events_of(instance, second.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retried) == 1 and retried[0].step_key.removeprefix("book_embeddings.") in embed_steps
    assert loaded_files(data_dir) == {path.name for path in files}
    assert len(stored_points(data_dir)) == 4

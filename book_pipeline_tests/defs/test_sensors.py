"""new_book_files_sensor, evaluated tick by tick against a real instance and a real ledger."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.core.embedding.cache import open_embedding_cache
from book_pipeline.core.settings import EMBEDDING_CACHE_FOLDER
from book_pipeline.definitions import defs
from book_pipeline.defs.resources import BooksFolder, EmbedderResource, PipelineStateResource
from book_pipeline.defs.sensors import BATCH_TAG, new_book_files_sensor, run_config_for
from book_pipeline_tests.support.data_folder import point_count, qdrant_in, record_as_loaded
from book_pipeline_tests.support.loopback_http import Webhook, webhook_server
from book_pipeline_tests.support.runs import fetch_data_run_config
from book_pipeline_tests.support.small_filesystems import fill, mounted_tmpfs
from book_pipeline_tests.support.synthetic_books import synthetic_book_line, write_synthetic_books


def age(paths: list[Path], seconds: int = 3600) -> None:
    """Make files look written long ago, past any settle time."""
    past = time.time() - seconds
    for path in paths:
        os.utime(path, (past, past))


def tick(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    cursor: str | None = None,
    max_files_per_run: int = 100,
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    # A `with` block: the pipeline state resource has a teardown (its run lease).
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "books_folder": BooksFolder(
                path=str(books_dir), settle_seconds=60, max_files_per_run=max_files_per_run
            ),
            "pipeline_state": PipelineStateResource(data_dir=str(data_dir)),
            "qdrant": qdrant_in(data_dir),
            "embedder": EmbedderResource(),
        },
        definitions=defs,
    ) as context:
        result = new_book_files_sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], None, result.skip_message
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return list(result.run_requests or []), result.cursor, skip


def requested_files(request: dg.RunRequest) -> list[str]:
    ops = request.run_config["ops"]["book_embeddings"]["ops"]
    return ops["list_book_description_files"]["config"]["only_files"]


def test_nothing_new_requests_nothing(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    requests, _, skip = tick(instance, books_dir, data_dir)
    assert requests == []
    assert skip == "no new, changed or deleted files"


def test_settled_new_files_are_requested_once_per_content(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    files = write_synthetic_books(books_dir, files=2, books_per_file=1)
    age(files)

    [request], cursor, _ = tick(instance, books_dir, data_dir)
    assert requested_files(request) == [path.name for path in files]
    assert request.tags[BATCH_TAG] in request.run_key

    [again], _, _ = tick(instance, books_dir, data_dir, cursor=cursor)
    assert again.run_key == request.run_key  # Dagster launches one run per run key


def test_a_file_being_written_waits_until_it_is_stable(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    growing = books_dir / "growing.txt"
    growing.write_text("1 ::: First (2001) ::: A ::: B\n")

    requests, cursor, skip = tick(instance, books_dir, data_dir)
    assert requests == []
    assert skip == "1 file(s) still being written"

    with growing.open("a") as file:
        file.write("2 ::: Second (2002) ::: A ::: B\n")
    requests, cursor, _ = tick(instance, books_dir, data_dir, cursor=cursor)
    assert requests == []

    [request], _, _ = tick(instance, books_dir, data_dir, cursor=cursor)
    assert requested_files(request) == ["growing.txt"]


def test_a_burst_is_batched(instance: dg.DagsterInstance, books_dir: Path, data_dir: Path) -> None:
    age(write_synthetic_books(books_dir, files=50, books_per_file=1))

    requests, _, _ = tick(instance, books_dir, data_dir, max_files_per_run=20)

    # Nothing in flight: the first batch is small (BOOK_PIPELINE_FIRST_BATCH_FILES), so the
    # first books are searchable soon; the run queue starts the batches one at a time, in order.
    assert [len(requested_files(request)) for request in requests] == [10, 20, 20]
    assert len({request.run_key for request in requests}) == 3


def test_loaded_folder_requests_nothing_even_with_a_reset_cursor(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    files = write_synthetic_books(books_dir, files=3, books_per_file=1)
    age(files)
    record_as_loaded(data_dir, files)

    requests, _, skip = tick(instance, books_dir, data_dir, cursor=None)

    assert requests == []
    assert skip == "no new, changed or deleted files"


def test_files_of_a_running_run_are_not_requested_again(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    first, second = write_synthetic_books(books_dir, files=2, books_per_file=1)
    age([first, second])
    instance.create_run_for_job(
        defs.resolve_job_def("fetch_data"),
        run_config=run_config_for([first.name]),
        status=dg.DagsterRunStatus.STARTED,
    )

    [request], _, _ = tick(instance, books_dir, data_dir)

    assert requested_files(request) == [second.name]


def test_a_run_that_refused_a_file_leaves_nothing_to_retry_until_it_is_fixed(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    """The run fails on the bad file but loads the good ones: no batch is left to retry, and
    fixing the file makes a new batch, with its own run key and attempt count."""
    good = write_synthetic_books(books_dir, files=2, books_per_file=1)
    broken = books_dir / "broken.txt"
    broken.write_text("1 ::: No Year ::: A ::: B\n")
    age([*good, broken])
    [request], cursor, _ = tick(instance, books_dir, data_dir)
    run_config = {**request.run_config, **fetch_data_run_config(books_dir, data_dir)}
    failed = defs.resolve_job_def("fetch_data").execute_in_process(
        run_config=run_config, instance=instance, tags=request.tags, raise_on_error=False
    )
    assert not failed.success
    assert point_count(data_dir) == 2

    requests, cursor, skip = tick(instance, books_dir, data_dir, cursor=cursor)
    assert requests == []
    assert skip == "no new, changed or deleted files"

    broken.write_text("1 ::: Now With Its Year (2001) ::: A ::: B\n")
    age([broken])
    [retry], _, _ = tick(instance, books_dir, data_dir, cursor=cursor)
    assert requested_files(retry) == [broken.name]
    assert retry.tags[BATCH_TAG] != request.tags[BATCH_TAG]
    assert retry.run_key.endswith("-0")


def test_a_batch_that_met_a_full_disk_waits_for_space_and_keeps_its_attempts(
    instance: dg.DagsterInstance, books_dir: Path, tmp_path: Path
) -> None:
    age(write_synthetic_books(books_dir, files=2, books_per_file=3))
    with mounted_tmpfs(tmp_path / "small", size="16m") as small:
        data_dir = small / "data"
        [request], cursor, _ = tick(instance, books_dir, data_dir)
        # Less than the store's margin: the load refuses to create the collection.
        filler = fill(small, leave_bytes=2 * 2**20)
        failed = defs.resolve_job_def("fetch_data").execute_in_process(
            run_config={**request.run_config, **fetch_data_run_config(books_dir, data_dir)},
            instance=instance,
            tags=request.tags,
            raise_on_error=False,
        )
        assert not failed.success

        requests, cursor, skip = tick(instance, books_dir, data_dir, cursor=cursor)
        assert requests == []
        assert skip is not None
        assert skip.startswith(f"waiting for free space in {data_dir / 'qdrant-edge'}: ")
        assert re.search(r"[\d,]+ bytes \([\d.]+ [MG]iB\) needed$", skip)

        filler.unlink()
        [retry], _, _ = tick(instance, books_dir, data_dir, cursor=cursor)
        # This process keeps the cache open (one per folder): closed, the folder can unmount.
        open_embedding_cache(data_dir / EMBEDDING_CACHE_FOLDER).close()

    assert retry.tags[BATCH_TAG] == request.tags[BATCH_TAG]
    assert retry.run_key.endswith("-1")


def test_a_deleted_file_requests_a_cleanup_run(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    [path] = write_synthetic_books(books_dir, files=1, books_per_file=1)
    record_as_loaded(data_dir, [path])
    path.unlink()

    [request], _, _ = tick(instance, books_dir, data_dir)

    assert requested_files(request) == []


def test_a_tick_over_a_large_loaded_folder_is_fast(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    paths = write_synthetic_books(books_dir, files=10_000, books_per_file=1)
    record_as_loaded(data_dir, paths)

    # The tick's own CPU time, which the suite's other workers on the same cores do not inflate.
    started = time.process_time()
    requests, _, _ = tick(instance, books_dir, data_dir)
    elapsed = time.process_time() - started

    assert requests == []
    assert elapsed < 0.5


# The real daemon: `dagster-daemon run` started here, on this machine only, stopped by PID.

DAEMON = Path(sys.executable).parent / "dagster-daemon"
SENSOR_INTERVAL_SECONDS = 2
RUN_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Daemon:
    instance: dg.DagsterInstance
    # Where the daemon's failure-alert sensor posts (BOOK_PIPELINE_ALERT_WEBHOOK_URL).
    webhook: Webhook


@pytest.fixture
def daemon(tmp_path: Path, books_dir: Path, data_dir: Path) -> Iterator[Daemon]:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The instance's storage is created here, first: two processes creating it at once can
    # leave its schema history with two heads.
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    with webhook_server() as webhook, instance:
        environment = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
            "BOOK_PIPELINE_DATA_DIR": str(data_dir),
            "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL_SECONDS),
            "BOOK_PIPELINE_SETTLE_SECONDS": "60",
            "BOOK_PIPELINE_ALERT_WEBHOOK_URL": webhook.url,
        }
        log = (tmp_path / "daemon.log").open("w")
        process = subprocess.Popen(
            [str(DAEMON), "run", "-m", "book_pipeline.definitions"],
            env=environment,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield Daemon(instance, webhook)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()


def fetch_data_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name="fetch_data")))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def sensor_ticks(instance: dg.DagsterInstance) -> int:
    """Ticks the daemon has evaluated so far (no state is stored before the first one)."""
    states = [
        state for state in instance.all_instigator_state() if state.name == "new_book_files_sensor"
    ]
    return sum(
        len(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000))
        for state in states
    )


@pytest.mark.slow
def test_daemon_loads_a_dropped_file_once_and_runs_nothing_otherwise(
    daemon: Daemon, books_dir: Path, data_dir: Path
) -> None:
    instance = daemon.instance
    wait_for(lambda: sensor_ticks(instance) >= 2, RUN_TIMEOUT_SECONDS, "two sensor ticks")
    assert fetch_data_runs(instance) == []

    # Written in chunks faster than the sensor ticks, then left alone: loaded once, complete.
    dropped = books_dir / "arrivals.txt"
    lines = [synthetic_book_line(random.Random(index), index) for index in range(6)]
    with dropped.open("w") as file:
        for line in lines:
            file.write(line + "\n")
            file.flush()
            time.sleep(0.2)

    wait_for(
        lambda: any(run.is_finished for run in fetch_data_runs(instance)),
        RUN_TIMEOUT_SECONDS,
        "the sensor's fetch_data run",
    )
    [run] = fetch_data_runs(instance)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert point_count(data_dir) == len(lines)

    ticks_after_run = sensor_ticks(instance)
    wait_for(
        lambda: sensor_ticks(instance) >= ticks_after_run + 2,
        RUN_TIMEOUT_SECONDS,
        "two more sensor ticks",
    )
    assert len(fetch_data_runs(instance)) == 1


@pytest.mark.slow
def test_daemon_alerts_on_a_run_that_failed_on_a_bad_file(daemon: Daemon, books_dir: Path) -> None:
    (books_dir / "broken.txt").write_text("1 ::: A Title Without Its Year ::: A ::: B\n")

    wait_for(lambda: bool(daemon.webhook.posts), RUN_TIMEOUT_SECONDS, "the failure alert")

    [run] = fetch_data_runs(daemon.instance)
    assert run.status == dg.DagsterRunStatus.FAILURE
    [(_, _, alert)] = daemon.webhook.posts
    assert alert["run_id"] == run.run_id
    assert alert["job_name"] == "fetch_data"
    assert "broken.txt, line 1" in alert["text"]


def test_a_deleted_or_restored_store_requests_the_files_it_no_longer_holds(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The tick reads the collection's stamp: a store gone, or an older copy of it, starts a run
    for exactly the files the record says it held and no longer does."""
    early = write_synthetic_books(books_dir, files=2, books_per_file=1)
    age(early)
    record_as_loaded(data_dir, early)
    shard = data_dir / "qdrant-edge" / "books"
    shutil.copytree(shard, tmp_path / "backup")
    later = write_synthetic_books(books_dir, files=1, books_per_file=1, first_file=2)
    age(later)
    record_as_loaded(data_dir, later)
    assert tick(instance, books_dir, data_dir)[0] == []

    shutil.rmtree(shard)
    shutil.copytree(tmp_path / "backup", shard)
    [restored], _, _ = tick(instance, books_dir, data_dir)
    assert requested_files(restored) == [later[0].name]

    shutil.rmtree(shard)
    [deleted], _, _ = tick(instance, books_dir, data_dir)
    assert requested_files(deleted) == sorted(path.name for path in [*early, *later])


def test_an_unreadable_store_skips_the_tick_saying_why(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    age(write_synthetic_books(books_dir, files=1, books_per_file=1))
    shard = data_dir / "qdrant-edge" / "books"
    shard.mkdir(parents=True)  # a shard folder without its manifest: damaged, left alone

    requests, _, skip = tick(instance, books_dir, data_dir)

    assert requests == []
    assert skip is not None and "cannot read the Qdrant collection" in skip and str(shard) in skip

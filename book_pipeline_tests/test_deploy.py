"""Beyond one machine: the instance on PostgreSQL, the steps on Celery workers over Redis.

The servers are real, started here from the system's packages on 127.0.0.1 and stopped by PID
(book_pipeline_tests/support/services.py); a test skips, naming what is missing, only where a
server's binaries are not installed (`.ci/run` installs them).
"""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from book_pipeline_tests.defs.test_sensors import age, requested_files, tick
from book_pipeline_tests.support.data_folder import qdrant_in
from book_pipeline_tests.support.runs import (
    dagster_job_execute,
    fetch_data_job,
    fetch_data_run_config,
)
from book_pipeline_tests.support.services import (
    PostgresServer,
    celery_worker,
    missing_postgres,
    postgres_server,
    process_ancestors,
)
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

# Its tests share a module-scoped fixture: one worker runs them all, and the set-up once
# (book_pipeline_tests/conftest.py).
pytestmark = pytest.mark.xdist_group(__name__)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RUN_TIMEOUT_SECONDS = 240


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    reason = missing_postgres()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as server:
        yield server


def deploy_dagster_home(path: Path, dagster_yaml: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(dagster_yaml, path / "dagster.yaml")
    return path


def run_to_the_end(process: subprocess.Popen) -> str:
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"the run did not finish:\n{output[-3000:]}") from None
    assert process.returncode == 0, output[-3000:]
    return output


def runs_in_postgres(server: PostgresServer, job_name: str) -> list[tuple[str, str]]:
    """(run id, status) of the job's runs, read from the database itself."""
    import psycopg2

    with (
        psycopg2.connect(
            host=server.host,
            port=server.port,
            user=server.username,
            password=server.password,
            dbname=server.db_name,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT run_id, status FROM runs WHERE pipeline_name = %s", (job_name,))
        return sorted(cursor.fetchall())


def test_fetch_data_and_the_sensor_on_a_postgres_instance(
    postgres: PostgresServer,
    tmp_path: Path,
    books_dir: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in postgres.environment().items():
        monkeypatch.setenv(name, value)
    dagster_home = deploy_dagster_home(tmp_path / "dagster_home", DEPLOY / "dagster.yaml")
    # Created here first: the schema is made once, not by two processes at once.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

        write_synthetic_books(books_dir, files=3, books_per_file=2)
        # The status is read back below: at INFO (deploy/dagster.yaml) Dagster's DEBUG-level
        # event lines, RUN_SUCCESS among them, are not printed.
        run_to_the_end(
            dagster_job_execute(
                dagster_home,
                cwd=tmp_path,
                environment={
                    "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
                    "BOOK_PIPELINE_DATA_DIR": str(data_dir),
                    **postgres.environment(),
                },
            )
        )

        [run] = instance.get_runs(filters=dg.RunsFilter(job_name="fetch_data"))
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert runs_in_postgres(postgres, "fetch_data") == [(run.run_id, "SUCCESS")]
        materialization = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))
        assert materialization is not None and materialization.run_id == run.run_id

        # The sensor against the same instance: the loaded folder asks for nothing, a new
        # file asks for one run.
        requests, cursor, skip = tick(instance, books_dir, data_dir)
        assert requests == []
        assert skip == "no new, changed or deleted files"
        [new_file] = write_synthetic_books(books_dir, files=1, books_per_file=2, first_file=3)
        age([new_file])
        [request], _, _ = tick(instance, books_dir, data_dir, cursor=cursor)
        assert requested_files(request) == [new_file.name]


def point_ids_and_vectors(data_dir: Path) -> dict[str, np.ndarray]:
    with qdrant_in(data_dir).open() as store:
        points, _ = store.scroll(10_000, with_vectors=True)
    return {str(point.id): np.asarray(point.vector) for point in points}


PER_FILE_OPS = ("transform_book_description_file", "create_vector_embeddings")


def test_fetch_data_celery_runs_each_file_on_the_workers_with_the_in_process_result(
    redis_url: str, tmp_path: Path, books_dir: Path, data_dir: Path
) -> None:
    files = write_synthetic_books(books_dir, files=6, books_per_file=3)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environment = {
        "DAGSTER_HOME": str(dagster_home),
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
        "BOOK_PIPELINE_CELERY_BROKER": redis_url,
        "BOOK_PIPELINE_CELERY_BACKEND": redis_url,
    }
    with (
        dg.DagsterInstance.from_config(str(dagster_home)) as instance,
        celery_worker(
            DEPLOY / "celery.yaml", environment, tmp_path / "worker.log", cwd=tmp_path
        ) as worker,
    ):
        launcher = dagster_job_execute(
            dagster_home, cwd=tmp_path, environment=environment, job="fetch_data_celery"
        )
        output = run_to_the_end(launcher)

        [run] = instance.get_runs(filters=dg.RunsFilter(job_name="fetch_data_celery"))
        assert run.status == dg.DagsterRunStatus.SUCCESS, output[-3000:]
        starts = {
            entry.dagster_event.step_key.removeprefix("book_embeddings."): entry.dagster_event.pid
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if entry.dagster_event is not None and entry.dagster_event.step_key
        }
        per_file = {key: pid for key, pid in starts.items() if key.startswith(PER_FILE_OPS)}
        assert len(per_file) == 2 * len(files)
        for step_key, pid in per_file.items():
            assert pid != launcher.pid, step_key
            # A process of the worker's pool: the worker command is among its ancestors.
            assert worker.process.pid in process_ancestors(pid), (step_key, pid)
        assert worker.log().count("] succeeded in ") >= len(per_file)

    in_process_data = tmp_path / "in_process_data"
    assert (
        fetch_data_job()
        .execute_in_process(run_config=fetch_data_run_config(books_dir, in_process_data))
        .success
    )
    on_celery = point_ids_and_vectors(data_dir)
    in_process = point_ids_and_vectors(in_process_data)
    assert len(on_celery) == 6 * 3
    assert on_celery.keys() == in_process.keys()
    for point_id, vector in on_celery.items():
        np.testing.assert_allclose(vector, in_process[point_id], atol=1e-6)

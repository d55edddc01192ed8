"""Real servers for the deployment tests and benchmark: PostgreSQL, Redis and a Celery worker.

Each is started from the system's packages (`.ci/run` installs them when missing), listens on
127.0.0.1 only, on a free port, keeps its data in a temporary folder, and is stopped by its PID
when the `with` block ends. Where a server's binaries are missing, `missing_*` names them so a
test can skip saying exactly what is not installed.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT_SECONDS):
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.1)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process's group (it was started in a session of its own), wait until every
    process of the group is gone, SIGKILL what is left after `timeout`."""
    group = process.pid
    if _group_alive(group):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process.poll() is None or _group_alive(group):
        if time.monotonic() > deadline:
            if _group_alive(group):
                os.killpg(group, signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.1)


# PostgreSQL

POSTGRES_SYSTEM_USER = "postgres"  # the server refuses to run as root


def postgres_bin_dir() -> Path | None:
    """The newest installed server's binaries (Debian keeps initdb and pg_ctl off PATH)."""
    candidates = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_postgres() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None when it can."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start PostgreSQL as a normal user"
        try:
            import pwd

            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            return f"running as root and there is no `{POSTGRES_SYSTEM_USER}` system user"
    return None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    username: str
    password: str
    db_name: str

    def environment(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its connection from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }


@contextmanager
def postgres_server(db_name: str = "dagster") -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, with password login and one database."""
    reason = missing_postgres()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    # Not under pytest's tmp_path: its folders are private to root, and the server's user must
    # reach its own data folder.
    base = Path(tempfile.mkdtemp(prefix="book_pipeline_pg_"))
    data = base / "data"
    password = "dagster-test-password"
    (base / "pwfile").write_text(password + "\n")
    if as_root:
        shutil.chown(base, user=POSTGRES_SYSTEM_USER)
        shutil.chown(base / "pwfile", user=POSTGRES_SYSTEM_USER)
    as_server_user = ["runuser", "-u", POSTGRES_SYSTEM_USER, "--"] if as_root else []

    def server_command(*arguments: str) -> None:
        completed = subprocess.run(
            [*as_server_user, *arguments], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(arguments[:2])} failed:\n{completed.stdout}\n{completed.stderr}"
            )

    port = free_port()
    username = "dagster"
    server_command(
        str(bin_dir / "initdb"),
        *("-D", str(data), "-U", username, "--pwfile", str(base / "pwfile")),
        *("--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"),
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    server_command(
        str(bin_dir / "pg_ctl"),
        *("-D", str(data), "-l", str(base / "server.log"), "-o", options, "-w", "start"),
    )
    try:
        createdb = subprocess.run(
            [
                str(bin_dir / "createdb"),
                *("-h", "127.0.0.1", "-p", str(port), "-U", username, db_name),
            ],
            env={**os.environ, "PGPASSWORD": password},
            capture_output=True,
            text=True,
            check=False,
        )
        if createdb.returncode != 0:
            raise RuntimeError(f"createdb failed: {createdb.stderr}")
        yield PostgresServer("127.0.0.1", port, username, password, db_name)
    finally:
        server_command(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


# Redis

REDIS_SERVER = "redis-server"


def missing_redis() -> str | None:
    if shutil.which(REDIS_SERVER) is None:
        return "redis-server not found: apt-get install redis-server"
    return None


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis on 127.0.0.1 with nothing written to disk; yields its URL (database 0)."""
    reason = missing_redis()
    if reason is not None:
        raise RuntimeError(reason)
    import redis

    port = free_port()
    process = subprocess.Popen(
        [
            REDIS_SERVER,
            *("--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.exceptions.ConnectionError:
            return False

    try:
        wait_until(answers, "redis-server")
        yield url
    finally:
        stop_process_group(process)


# A Celery worker of dagster-celery


@dataclass(frozen=True)
class CeleryWorker:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def celery_worker_config(path: Path, broker: str, backend: str | None = None) -> Path:
    """The executor config block `dagster-celery worker start -y` reads its broker from."""
    path.write_text(
        f"execution:\n  config:\n    broker: '{broker}'\n    backend: '{backend or broker}'\n"
    )
    return path


@contextmanager
def celery_worker(
    config_yaml: Path,
    environment: dict[str, str],
    log_path: Path,
    concurrency: int = 2,
    cwd: Path | None = None,
) -> Iterator[CeleryWorker]:
    """`dagster-celery worker start` in its own session, ready once it has joined the broker.

    `environment` must hold DAGSTER_HOME (the command writes the broker config under it).
    """
    bin_dir = Path(sys.executable).parent
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            str(bin_dir / "dagster-celery"),
            *("worker", "start", "-A", "dagster_celery.app", "-y", str(config_yaml)),
            *("--", f"--concurrency={concurrency}", "--pool=prefork"),
        ],
        # The command starts `celery` by name: this environment's first.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **environment},
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = CeleryWorker(process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{worker.log()[-3000:]}")
        return " ready." in worker.log()

    try:
        wait_until(ready, "the Celery worker")
        yield worker
    finally:
        stop_process_group(process)
        log.close()


def process_ancestors(pid: int) -> list[int]:
    """The PIDs above `pid`, nearest first (Linux /proc)."""
    ancestors = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        ancestors.append(pid)
    return ancestors

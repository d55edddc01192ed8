import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from book_pipeline.core.runtime.run_leases import (
    Lease,
    ProcessIdentity,
    RunLease,
    forget_run,
    heartbeat_seconds,
    judge_run,
    process_exists,
    read_leases,
    runs_with_leases,
)

GRACE = 60.0
STARTED = 1_000_000.0


def lease_of(pid: int, last_seen: float, ended: bool = False, here: bool = True) -> Lease:
    identity = ProcessIdentity.of(os.getpid())
    holder = ProcessIdentity(identity.host if here else "another-host", identity.boot_id, pid, "1")
    return Lease("run", holder, last_seen, ended)


def alive_if(*pids: int):
    return lambda holder: holder.pid in pids


def test_a_run_whose_process_is_gone_is_dead_once_the_grace_period_is_over() -> None:
    leases = [lease_of(101, last_seen=STARTED + 30)]

    soon = judge_run(leases, STARTED, STARTED + 30 + GRACE - 1, GRACE, alive_if())
    later = judge_run(leases, STARTED, STARTED + 30 + GRACE + 1, GRACE, alive_if())

    assert soon.alive
    assert not later.alive
    assert "none of its processes is running: 101 on" in later.reason
    assert later.failure_message().startswith("the run's process died (")
    assert later.failure_message().endswith("last seen at 1970-01-12T13:47:10+00:00")


def test_a_live_process_keeps_its_run_alive_however_old_its_heartbeat() -> None:
    """A long embed or index build: the process is there, so the run lives."""
    leases = [lease_of(101, last_seen=STARTED), lease_of(102, last_seen=STARTED, ended=True)]

    verdict = judge_run(leases, STARTED, STARTED + 100 * GRACE, GRACE, alive_if(101))

    assert verdict.alive
    assert verdict.reason == "process 101 is running"


def test_between_two_step_processes_the_run_lives_until_the_grace_period_ends() -> None:
    ended = [lease_of(101, last_seen=STARTED + 10, ended=True)]

    assert judge_run(ended, STARTED, STARTED + 10 + GRACE, GRACE, alive_if()).alive
    assert not judge_run(ended, STARTED, STARTED + 11 + GRACE, GRACE, alive_if()).alive


def test_a_just_started_run_without_a_lease_is_given_the_grace_period() -> None:
    assert judge_run([], STARTED, STARTED + GRACE, GRACE, alive_if()).alive
    verdict = judge_run([], STARTED, STARTED + GRACE + 1, GRACE, alive_if())
    assert not verdict.alive
    assert verdict.reason == "no process of the run ever took its lease"


def test_a_process_on_another_machine_lives_by_its_heartbeat() -> None:
    remote = [lease_of(101, last_seen=STARTED + 100, here=False)]
    # Its pid means nothing here, alive or not.
    assert judge_run(remote, STARTED, STARTED + 100 + GRACE, GRACE, alive_if()).alive
    assert not judge_run(remote, STARTED, STARTED + 101 + GRACE, GRACE, alive_if(101)).alive


def test_a_lease_is_taken_touched_and_ended_by_the_process(tmp_path: Path) -> None:
    lease = RunLease(tmp_path, "run-1", grace_seconds=0.4)
    lease.start()
    [taken] = read_leases(tmp_path, "run-1")
    assert taken.holder == ProcessIdentity.of(os.getpid())
    assert not taken.ended
    assert process_exists(taken.holder)
    first_seen = taken.last_seen
    # The heartbeat thread touches the file on its own.
    while read_leases(tmp_path, "run-1")[0].last_seen == first_seen:
        os.sched_yield()

    lease.end()

    [ended] = read_leases(tmp_path, "run-1")
    assert ended.ended
    assert list(runs_with_leases(tmp_path)) == ["run-1"]
    forget_run(tmp_path, "run-1")
    assert list(runs_with_leases(tmp_path)) == []


def test_a_reused_pid_is_not_the_process_that_took_the_lease() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = ProcessIdentity.of(child.pid)
        assert process_exists(identity)
        assert not process_exists(ProcessIdentity(**{**identity.__dict__, "start_ticks": "0"}))
    finally:
        child.kill()
        child.wait()
    assert not process_exists(identity)


def test_the_heartbeat_beats_several_times_per_grace_period() -> None:
    assert heartbeat_seconds(60) == 15


def wait_for_a_heartbeat(state_folder: Path, run_id: str, after: float) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leases = read_leases(state_folder, run_id)
        if leases and leases[0].last_seen > after:
            return leases[0].last_seen
        time.sleep(0.02)
    raise AssertionError("the heartbeat stopped")


def test_a_heartbeat_survives_write_errors_and_a_removed_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network share that fails a few touches (EIO), then a check that removed the file: the
    lease still beats, so only a process that stopped ages."""
    touch = os.utime
    failures = []

    def failing_touch(path: Path, *arguments: object) -> None:
        if len(failures) < 3:
            failures.append(path)
            raise OSError(errno.EIO, "Input/output error", str(path))
        touch(path, *arguments)

    lease = RunLease(tmp_path, "run-1", grace_seconds=0.4)
    lease.start()
    try:
        [taken] = read_leases(tmp_path, "run-1")
        monkeypatch.setattr(os, "utime", failing_touch)
        wait_for_a_heartbeat(tmp_path, "run-1", after=taken.last_seen)
        assert len(failures) == 3
        monkeypatch.undo()

        forget_run(tmp_path, "run-1")
        wait_for_a_heartbeat(tmp_path, "run-1", after=0.0)
        [written_again] = read_leases(tmp_path, "run-1")
        assert written_again.holder == taken.holder and not written_again.ended
    finally:
        lease.end()


def test_holders_in_one_process_share_the_lease_until_the_last_ends(tmp_path: Path) -> None:
    """The executor and, in the same process, the resources hold the run's lease together."""
    orchestrator, resources = (RunLease(tmp_path, "run-1", GRACE) for _ in range(2))
    orchestrator.start()
    resources.start()
    resources.end()
    [lease] = read_leases(tmp_path, "run-1")
    assert not lease.ended

    orchestrator.end()
    [lease] = read_leases(tmp_path, "run-1")
    assert lease.ended

"""Run leases: how a run that died (SIGKILL, OOM kill, power cut, SIGBUS) is told apart from one
that is merely slow.

Every process that works for a run holds a lease file in the state folder while it lives:

    <state folder>/run_leases/<run id>/<host>-<pid>.json   who holds it: run, host, boot, pid
                                                           and the process's start time

A thread touches the file (its mtime is the heartbeat) every `heartbeat_seconds(grace)`; a touch
needs no free block, so a full disk does not stop it, and a touch that fails is tried again at
the next beat. The process that orchestrates a run holds a lease for the run's whole life
(defs/executors.py), so a run whose steps wait in a queue is alive; each step's process holds
one too. Holders in one process share one file. A process that ends cleanly marks its
lease ended. A run is alive while one of its leases is alive: on this machine and this boot, its
process still exists (the same pid with the same start time, so a reused pid does not count); on
another machine, its heartbeat is younger than the grace period. A run with no live lease is
dead only once its last sign of life (its newest heartbeat, or its start when no process has
written a lease yet) is older than the grace period: a multiprocess run between two steps, or a
run that has just started, is not failed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from book_pipeline.core.runtime.disk_space import naming_full_disk

LEASES_FOLDER_NAME = "run_leases"
_LEASE_SUFFIX = ".json"
_ENDED_SUFFIX = ".ended"
_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
# A heartbeat this many times per grace period: a remote process survives missed touches.
_HEARTBEATS_PER_GRACE = 4


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, as told apart from any other, even one that later reuses its pid."""

    host: str
    boot_id: str
    pid: int
    # Clock ticks since boot at which the process started (/proc/<pid>/stat); "" off Linux.
    start_ticks: str

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        return cls(socket.gethostname(), _boot_id(), pid, _start_ticks(pid))

    def is_on_this_machine(self) -> bool:
        return self.host == socket.gethostname() and self.boot_id == _boot_id()


@dataclass(frozen=True)
class Lease:
    run_id: str
    holder: ProcessIdentity
    # The file's mtime: the process's last heartbeat.
    last_seen: float
    ended: bool


@dataclass(frozen=True)
class RunVerdict:
    """Whether a run shows signs of life, and what the failure message says when it does not."""

    alive: bool
    last_seen: float
    reason: str

    def failure_message(self) -> str:
        seen = datetime.fromtimestamp(self.last_seen, UTC).isoformat(timespec="seconds")
        return f"the run's process died ({self.reason}); last seen at {seen}"


def heartbeat_seconds(grace_seconds: float) -> float:
    return max(grace_seconds / _HEARTBEATS_PER_GRACE, 0.1)


def leases_folder(state_folder: Path) -> Path:
    return state_folder / LEASES_FOLDER_NAME


def _boot_id() -> str:
    try:
        return _BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.rsplit(")", 1)[1].split()[19]


def process_exists(identity: ProcessIdentity) -> bool:
    """The process on this machine is still there: the same pid, started at the same time."""
    try:
        os.kill(identity.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    return _start_ticks(identity.pid) == identity.start_ticks


class _Heartbeat:
    """A lease file and the thread that touches it, shared by the holders of one process."""

    def __init__(self, path: Path, record: dict[str, object], interval: float) -> None:
        self.path = path
        self.holders = 0
        self._record = record
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-lease", daemon=True)

    def start(self) -> None:
        self._write()
        self._thread.start()

    def _write(self) -> None:
        partial = self.path.with_suffix(".partial")
        with naming_full_disk(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(self._record))
            os.replace(partial, self.path)

    def _beat(self) -> None:
        """Touch the file until `end`. A failed touch (a network share's hiccup, the folder
        cleaned by a check that judged the run ended) is tried again at the next beat, the file
        written anew if it is gone: only a process that stopped lets its lease age."""
        while not self._stop.wait(self._interval):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                with suppress(OSError):
                    self._write()
            except OSError:
                continue

    def end(self) -> None:
        self._stop.set()
        self._thread.join()
        with suppress(OSError):
            os.utime(self.path)
            os.replace(self.path, self.path.with_suffix(_ENDED_SUFFIX))


# This process's lease files by path: the executor and, in the same process, the resources hold
# one lease together, and the file ends with the last of them.
_heartbeats: dict[Path, _Heartbeat] = {}
_heartbeats_lock = threading.Lock()


class RunLease:
    """This process's hold on a run's lease: written on `start`, touched by a thread, ended by
    `end`. Holders in one process share the file; it ends when the last one ends."""

    def __init__(self, state_folder: Path, run_id: str, grace_seconds: float) -> None:
        self.holder = ProcessIdentity.of(os.getpid())
        self.path = (
            leases_folder(state_folder)
            / run_id
            / f"{self.holder.host}-{self.holder.pid}{_LEASE_SUFFIX}"
        )
        self._record: dict[str, object] = {"run_id": run_id, **self.holder.__dict__}
        self._interval = heartbeat_seconds(grace_seconds)
        self._started = False

    def start(self) -> None:
        with _heartbeats_lock:
            heartbeat = _heartbeats.get(self.path)
            if heartbeat is None:
                heartbeat = _Heartbeat(self.path, self._record, self._interval)
                heartbeat.start()
                _heartbeats[self.path] = heartbeat
            heartbeat.holders += 1
            self._started = True

    def end(self) -> None:
        with _heartbeats_lock:
            if not self._started:
                return
            self._started = False
            heartbeat = _heartbeats[self.path]
            heartbeat.holders -= 1
            if heartbeat.holders:
                return
            del _heartbeats[self.path]
        heartbeat.end()


def read_leases(state_folder: Path, run_id: str) -> list[Lease]:
    """The run's leases; a file cut short or unreadable counts by its mtime, as one that ended."""
    leases = []
    folder = leases_folder(state_folder) / run_id
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        ended = path.suffix == _ENDED_SUFFIX
        if path.suffix not in (_LEASE_SUFFIX, _ENDED_SUFFIX):
            continue
        try:
            last_seen = path.stat().st_mtime
            record = json.loads(path.read_text())
            holder = ProcessIdentity(
                record["host"], record["boot_id"], int(record["pid"]), record["start_ticks"]
            )
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError):
            holder, ended = ProcessIdentity("?", "?", 0, ""), True
        leases.append(Lease(run_id, holder, last_seen, ended))
    return leases


def judge_run(
    leases: Sequence[Lease],
    run_started_at: float,
    now: float,
    grace_seconds: float,
    process_alive: Callable[[ProcessIdentity], bool] = process_exists,
) -> RunVerdict:
    """Alive while a lease is; dead once nothing has shown life for `grace_seconds`."""
    last_seen = max([run_started_at, *(lease.last_seen for lease in leases)])
    for lease in leases:
        if lease.ended:
            continue
        if lease.holder.is_on_this_machine():
            if process_alive(lease.holder):
                return RunVerdict(True, last_seen, f"process {lease.holder.pid} is running")
        elif now - lease.last_seen <= grace_seconds:
            return RunVerdict(True, last_seen, f"{lease.holder.host} touched its lease")
    if now - last_seen <= grace_seconds:
        return RunVerdict(True, last_seen, f"last sign of life within {grace_seconds:g} s")
    if not leases:
        reason = "no process of the run ever took its lease"
    else:
        holders = ", ".join(f"{lease.holder.pid} on {lease.holder.host}" for lease in leases)
        reason = f"none of its processes is running: {holders}"
    return RunVerdict(False, last_seen, reason)


def runs_with_leases(state_folder: Path) -> Iterator[str]:
    folder = leases_folder(state_folder)
    if folder.is_dir():
        yield from (path.name for path in folder.iterdir() if path.is_dir())


def forget_run(state_folder: Path, run_id: str) -> None:
    """Remove a finished run's leases."""
    shutil.rmtree(leases_folder(state_folder) / run_id, ignore_errors=True)

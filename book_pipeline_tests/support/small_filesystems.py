"""Real small filesystems for the full-disk tests: a tmpfs of a given size, or an ext4 image on a
loop device that can grow. Mounting needs root (CI runs as root); where it cannot be done the
test skips and says why. Whatever is mounted is unmounted, and a loop device detached, when the
block ends.
"""

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

EXT4_TOOLS = ("mkfs.ext4", "e2fsck", "losetup", "resize2fs", "mount", "umount")
_FILLER_CHUNK = b"\0" * (64 * 1024)


def _skip_if_cannot_mount(tools: tuple[str, ...]) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (e2fsprogs, mount)")


def _mount_or_skip(*arguments: str) -> None:
    """Mount; a machine that refuses (a container without the right) skips the test, saying so."""
    try:
        _run("mount", *arguments)
    except RuntimeError as error:
        pytest.skip(f"cannot mount a test filesystem here: {error}")


def _run(*command: str) -> str:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


def _unmount(mount_point: Path) -> None:
    """Unmount; a filesystem a failed test left files open on is detached lazily (the kernel
    finishes when they close), so that nothing stays mounted."""
    try:
        _run("umount", str(mount_point))
    except RuntimeError:
        _run("umount", "-l", str(mount_point))
        raise


@contextmanager
def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` ("2m") at the mount point; the test skips where none can be mounted."""
    _skip_if_cannot_mount(("mount", "umount"))
    mount_point.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        _unmount(mount_point)


@dataclass(frozen=True)
class LoopExt4:
    image: Path
    device: str
    mount_point: Path

    def grow(self, size: str) -> None:
        """Grow the image and the filesystem in it. Unmounted for the while: a container may
        refuse ext4's online resize (resize2fs: "Permission denied to resize filesystem")."""
        _run("umount", str(self.mount_point))
        try:
            _run("truncate", "-s", size, str(self.image))
            _run("losetup", "-c", self.device)
            _run("e2fsck", "-f", "-y", self.device)
            _run("resize2fs", self.device)
        finally:
            _run("mount", self.device, str(self.mount_point))


@contextmanager
def mounted_ext4(image: Path, mount_point: Path, size: str) -> Iterator[LoopExt4]:
    """An ext4 filesystem of `size` in an image on a loop device, mounted; the test skips where
    none can be mounted (not root, no loop device)."""
    _skip_if_cannot_mount(EXT4_TOOLS)
    _run("truncate", "-s", size, str(image))
    _run("mkfs.ext4", "-q", str(image))
    try:
        device = _run("losetup", "-f", "--show", str(image))
    except RuntimeError as error:
        pytest.skip(f"no loop device for an ext4 image: {error}")
    try:
        mount_point.mkdir(parents=True, exist_ok=True)
        _mount_or_skip(device, str(mount_point))
        try:
            yield LoopExt4(image, device, mount_point)
        finally:
            _unmount(mount_point)
    finally:
        _run("losetup", "-d", device)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """A filler file that takes the folder's free space, but `leave_bytes`; delete it to free
    the space again."""
    filler = folder / "filler"
    with filler.open("ab", buffering=0) as handle:
        for chunk in (_FILLER_CHUNK, _FILLER_CHUNK[:512]):
            while shutil.disk_usage(folder).free > leave_bytes + (len(chunk) if leave_bytes else 0):
                try:
                    handle.write(chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return filler

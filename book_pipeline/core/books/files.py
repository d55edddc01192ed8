"""Which files in the books folder are description files, and how Dagster names each one's copy."""

from __future__ import annotations

import hashlib
import operator
import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

BOOK_FILE_SUFFIX = ".txt"
# Bigger files are refused from their stat, before a byte is read (BOOK_PIPELINE_MAX_FILE_MB, a
# variable of core/settings.py's table, which imports this module: the message spells its name).
DEFAULT_MAX_FILE_MB = 50
BYTES_PER_MB = 1024 * 1024
# The ledger's content hash of a file refused before it was read (too big, symlink outside).
UNREAD_SHA256 = ""
_MAPPING_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_MAPPING_KEY_STEM_CHARS = 40


class BookFileError(ValueError):
    """A description file that cannot be read as books; names the file, the line and the problem."""

    def __init__(self, file_name: str, line_number: int | None, problem: str) -> None:
        self.file_name = file_name
        self.line_number = line_number
        self.problem = problem
        where = f"{file_name}, line {line_number}" if line_number else file_name
        super().__init__(f"{where}: {problem}")


def is_book_file_name(name: str) -> bool:
    """`.txt` files that are not hidden.

    Uploads in progress and editor backups (`x.txt.part`, `x.txt.tmp`, `x.txt~`) do not end in
    `.txt`, so half-written files are never picked up.
    """
    return name.endswith(BOOK_FILE_SUFFIX) and not name.startswith(".")


class FileSnapshot(NamedTuple):
    """A file as `stat` saw it: enough to notice a change without reading the file."""

    # Folder and name, not a Path, and a tuple, not a dataclass: a sensor tick builds one per
    # file, and 10,000 Paths or frozen dataclasses would be most of its time.
    folder: Path
    name: str
    size: int
    mtime_ns: int

    @property
    def path(self) -> Path:
        return self.folder / self.name

    @classmethod
    def of(cls, path: Path) -> FileSnapshot:
        status = path.stat()
        return cls(path.parent, path.name, status.st_size, status.st_mtime_ns)


def file_sha256(path: Path, books_folder: Path | None = None) -> str:
    """The content hash, read in chunks (a big file never sits in memory whole).

    With `books_folder`, a symlink that leads outside it is not followed: UNREAD_SHA256.
    """
    if books_folder is not None and not _resolves_inside(path, books_folder):
        return UNREAD_SHA256
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def read_book_file(
    path: Path, books_folder: Path | None = None, max_bytes: int | None = None
) -> tuple[FileSnapshot, bytes]:
    """The bytes and the stat of the same open file, so the two always describe one version.

    With `books_folder`, a symlink whose target is outside that folder is refused before anything
    is opened; a symlink inside it is followed. With `max_bytes`, a bigger file is refused from
    its stat, before it is read. Refusals are BookFileErrors, like a parse error.
    """
    source = str(path)
    if books_folder is not None:
        source = os.path.realpath(path)
        if not _is_inside(source, os.path.realpath(books_folder)):
            raise BookFileError(
                path.name,
                None,
                f"symlink points outside the books folder (to {source}): refused, nothing was "
                "read; copy the file into the books folder instead",
            )
    try:
        # The checked target itself, never a link swapped in since the check.
        file = open(source, "rb", opener=_open_no_follow)  # noqa: SIM115 (closed below)
    except OSError as error:
        if not path.is_symlink():
            raise
        raise BookFileError(
            path.name, None, f"symlink to {os.readlink(path)} cannot be read: {error.strerror}"
        ) from None
    with file:
        status = os.fstat(file.fileno())
        snapshot = FileSnapshot(path.parent, path.name, status.st_size, status.st_mtime_ns)
        if max_bytes is None:
            data = file.read()
        else:
            if status.st_size > max_bytes:
                raise too_big(path.name, status.st_size, max_bytes)
            data = file.read(max_bytes + 1)  # the file may have grown since the stat
            if len(data) > max_bytes:
                raise too_big(path.name, len(data), max_bytes)
    return snapshot, data


_NAME_OF = operator.attrgetter("name")


def snapshot_book_file(path: Path, books_folder: Path) -> FileSnapshot:
    """One file as `snapshot_book_files` sees it (a symlink outside the folder: the link itself)."""
    status = _link_status(str(path), os.path.realpath(books_folder)) if path.is_symlink() else None
    status = status or path.lstat()
    return FileSnapshot(path.parent, path.name, status.st_size, status.st_mtime_ns)


def snapshot_book_files(folder: Path) -> list[FileSnapshot]:
    """Stat every description file in one pass over the folder (cheap for 10,000 files).

    A symlink whose target is a file inside the folder is tracked by its target's stat. A symlink
    that leads outside the folder, or nowhere, is listed by its own stat, target untouched, so
    that its transform step refuses it visibly instead of it being skipped in silence.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"books folder does not exist: {folder}")
    real_folder = os.path.realpath(folder)
    snapshots = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_book_file_name(entry.name):
                continue
            if entry.is_symlink():
                status = _link_status(entry.path, real_folder)
            elif entry.is_file():
                status = entry.stat()
            else:
                status = None
            if status is not None:
                snapshots.append(
                    FileSnapshot(folder, entry.name, status.st_size, status.st_mtime_ns)
                )
    return sorted(snapshots, key=_NAME_OF)


def list_book_files(folder: Path) -> list[Path]:
    """The description files directly in the folder, sorted by name for a deterministic fan-out."""
    return [snapshot.path for snapshot in snapshot_book_files(folder)]


def mapping_key_for(file_name: str) -> str:
    """A valid Dagster mapping key (letters, digits, _) that stays readable and unique per name.

    Different names can clean up to the same text ("a b.txt", "a_b.txt"), so a hash of the exact
    name is appended.
    """
    readable = _MAPPING_KEY_UNSAFE.sub("_", Path(file_name).stem).strip("_")
    digest = hashlib.sha256(file_name.encode()).hexdigest()[:8]
    return f"{readable[:_MAPPING_KEY_STEM_CHARS]}_{digest}" if readable else f"file_{digest}"


def _is_inside(real_path: str, real_folder: str) -> bool:
    return Path(real_path).is_relative_to(real_folder)


def _resolves_inside(path: Path, books_folder: Path) -> bool:
    return _is_inside(os.path.realpath(path), os.path.realpath(books_folder))


def _link_status(link: str, real_folder: str) -> os.stat_result | None:
    """The stat a symlink is tracked by; None for a link to a directory or a device."""
    if not _is_inside(os.path.realpath(link), real_folder):
        return os.lstat(link)
    try:
        status = os.stat(link)
    except OSError:  # dangling, or a loop: listed, and refused when read
        return os.lstat(link)
    return status if stat.S_ISREG(status.st_mode) else None


def _open_no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def too_big(file_name: str, size: int, max_bytes: int) -> BookFileError:
    return BookFileError(
        file_name,
        None,
        f"the file is {size:,} bytes ({size / BYTES_PER_MB:.1f} MiB), over the limit of "
        f"{max_bytes / BYTES_PER_MB:g} MiB (BOOK_PIPELINE_MAX_FILE_MB): refused before parsing",
    )

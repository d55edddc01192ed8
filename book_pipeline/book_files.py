"""Which files in the books folder are description files, and how Dagster names each one's copy."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

BOOK_FILE_SUFFIX = ".txt"
# Uploads in progress and editor backups: picking them up would load half a file.
_TEMPORARY_SUFFIXES = (".part", ".tmp", "~")
_MAPPING_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_MAPPING_KEY_STEM_CHARS = 40


def is_book_file_name(name: str) -> bool:
    return (
        name.endswith(BOOK_FILE_SUFFIX)
        and not name.startswith(".")
        and not name.endswith(_TEMPORARY_SUFFIXES)
    )


@dataclass(frozen=True)
class FileSnapshot:
    """A file as `stat` saw it: enough to notice a change without reading the file."""

    # Folder and name, not a Path: building 10,000 Paths would be most of a sensor tick.
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


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_book_file(path: Path) -> tuple[FileSnapshot, bytes]:
    """The bytes and the stat of the same open file, so the two always describe one version."""
    with path.open("rb") as file:
        status = os.fstat(file.fileno())
        data = file.read()
    return FileSnapshot(path.parent, path.name, status.st_size, status.st_mtime_ns), data


def snapshot_book_files(folder: Path) -> list[FileSnapshot]:
    """Stat every description file in one pass over the folder (cheap for 10,000 files)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"books folder does not exist: {folder}")
    snapshots = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_book_file_name(entry.name) and entry.is_file():
                status = entry.stat()
                snapshots.append(
                    FileSnapshot(folder, entry.name, status.st_size, status.st_mtime_ns)
                )
    return sorted(snapshots, key=lambda snapshot: snapshot.name)


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

"""Which files in the books folder are description files, and how Dagster names each one's copy."""

from __future__ import annotations

import hashlib
import re
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


def list_book_files(folder: Path) -> list[Path]:
    """The description files directly in the folder, sorted by name for a deterministic fan-out."""
    if not folder.is_dir():
        raise FileNotFoundError(f"books folder does not exist: {folder}")
    return sorted(
        (path for path in folder.iterdir() if is_book_file_name(path.name) and path.is_file()),
        key=lambda path: path.name,
    )


def mapping_key_for(file_name: str) -> str:
    """A valid Dagster mapping key (letters, digits, _) that stays readable and unique per name.

    Different names can clean up to the same text ("a b.txt", "a_b.txt"), so a hash of the exact
    name is appended.
    """
    readable = _MAPPING_KEY_UNSAFE.sub("_", Path(file_name).stem).strip("_")
    digest = hashlib.sha256(file_name.encode()).hexdigest()[:8]
    return f"{readable[:_MAPPING_KEY_STEM_CHARS]}_{digest}" if readable else f"file_{digest}"

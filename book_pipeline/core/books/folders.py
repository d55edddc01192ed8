"""Where the user's files live when nothing is configured: `books/` and `data/` in the working
directory. The bundled samples stand in for `books/` until it exists, and only for a first try:
once the collection holds books of other files, a missing `books/` was moved or deleted, and
reading the samples instead would take the user's books for deleted ones
(`require_books_folder`). The package itself is never written to.

Decided here for everyone: `Settings.books_folder` (the `book-pipeline` command) and the Dagster
resource `BooksFolder` both fall back on `default_books_dir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from book_pipeline.core.books.files import list_book_files

# Both relative to the working directory, side by side.
DEFAULT_BOOKS_DIR = "books"
DEFAULT_DATA_DIR = "data"
SAMPLE_BOOKS_DIR = Path(__file__).parents[2] / "sample_books"
# The daemon or webserver that reads the folder may run as another user (mkdtemp makes 0700).
BOOKS_DIR_MODE = 0o755


def default_books_dir() -> Path:
    """`./books` once it exists, else the bundled samples.

    Decided at each use, not once at startup: when `add-books` creates `./books`, a running
    sensor and the next run read it without a restart.
    """
    user_folder = Path(DEFAULT_BOOKS_DIR).resolve()
    return user_folder if user_folder.is_dir() else SAMPLE_BOOKS_DIR


def is_sample_folder(folder: Path) -> bool:
    return folder.resolve() == SAMPLE_BOOKS_DIR.resolve()


class BooksFolderMissingError(FileNotFoundError):
    """The samples were to stand in for a books folder that the collection's books came from."""


def require_books_folder(folder: Path, held_files: Iterable[str]) -> None:
    """Refuse the bundled samples as the books folder once the collection holds books of any
    other file (`held_files`: the files it holds or the ledger records as loaded)."""
    if not is_sample_folder(folder):
        return
    samples = {path.name for path in list_book_files(SAMPLE_BOOKS_DIR)}
    others = sorted(set(held_files) - samples)
    if not others:
        return
    named = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    raise BooksFolderMissingError(
        f"the books folder {Path(DEFAULT_BOOKS_DIR).resolve()} does not exist, but the "
        f"collection holds books of files that are not samples ({named}): was it moved or "
        "deleted, or is this the wrong working directory? Put it back, or set "
        "BOOK_PIPELINE_BOOKS_DIR to where the files are now. The bundled samples stand in for "
        "it only until books of other files are loaded; nothing was read or removed"
    )


def create_user_books_dir() -> tuple[Path, list[str]]:
    """Create `./books` holding copies of the sample files; return it and the names copied
    (none when another process created it first).

    The copies keep the samples' names, bytes and mtimes. The load ledger knows a file by its
    name and a point by file name and index, so the samples already loaded are neither loaded
    again nor taken for deleted files (whose books would be removed from Qdrant). The folder is
    filled under a hidden name and renamed into place, so the sensor never sees it half full.
    """
    folder = Path(DEFAULT_BOOKS_DIR).resolve()
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".part"))
    try:
        copied = [
            _copy_keeping_mtime(sample, staging) for sample in list_book_files(SAMPLE_BOOKS_DIR)
        ]
        staging.chmod(BOOKS_DIR_MODE)
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if folder.is_dir():
            return folder, []
        raise
    return folder, copied


def _copy_keeping_mtime(source: Path, folder: Path) -> str:
    """Bytes and mtime, not the mode: an installed package's files may be read-only."""
    shutil.copyfile(source, folder / source.name)
    status = source.stat()
    os.utime(folder / source.name, ns=(status.st_atime_ns, status.st_mtime_ns))
    return source.name

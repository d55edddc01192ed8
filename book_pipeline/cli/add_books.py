"""`book-pipeline add-books`: a new description file, checked by the pipeline's own parser, written
atomically into the books folder the pipeline reads."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from book_pipeline.cli.common import EXIT_OK, CliError
from book_pipeline.core.books.files import BOOK_FILE_SUFFIX, is_book_file_name, too_big
from book_pipeline.core.books.folders import (
    DEFAULT_BOOKS_DIR,
    SAMPLE_BOOKS_DIR,
    create_user_books_dir,
    is_sample_folder,
)
from book_pipeline.core.books.parsing import BookFileError, parse_book_bytes
from book_pipeline.core.settings import VARIABLES, Settings

# mkstemp creates 0600 files; the webserver or daemon reading the folder may run as another user.
BOOK_FILE_MODE = 0o644


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    add_books = subcommands.add_parser(
        "add-books",
        help="write a new description file into the books folder",
        description="Write a new description file into the books folder. Every line is checked "
        "with the pipeline's own parser first, so the pipeline never picks up a file it would "
        "reject. Lines look like: <index> ::: <Title> (<Year>) ::: <Author> ::: <Description>",
    )
    add_books.add_argument(
        "name", metavar="NAME", help=f"file name; '{BOOK_FILE_SUFFIX}' is added if missing"
    )
    add_books.add_argument(
        "lines", metavar="LINE", nargs="*", help="book lines; read from stdin when none are given"
    )
    add_books.add_argument(
        "--books-dir",
        type=Path,
        help=f"books folder (default: ${VARIABLES.books_dir.name}, else ./{DEFAULT_BOOKS_DIR}, "
        "created with copies of the bundled samples when it does not exist)",
    )
    add_books.add_argument(
        "--overwrite", action="store_true", help="replace the file if it already exists"
    )
    add_books.set_defaults(handler=run_add_books)


def run_add_books(args: argparse.Namespace) -> int:
    # Everything that can be refused without the lines comes first: stdin may be typed by hand.
    file_name = book_file_name(args.name)
    folder, create_folder = folder_to_write(args.books_dir)
    path = folder / file_name
    # Until ./books is created, the samples are what its files will be.
    existing = (SAMPLE_BOOKS_DIR if create_folder else folder) / file_name
    if existing.exists() and not args.overwrite:
        raise CliError(f"{path} already exists; pass --overwrite to replace it")

    # Bytes throughout: undecodable input (kept as surrogates in argv) must be refused, not
    # re-encoded, and the checks below are the ones the pipeline runs on the file it reads.
    raw = "\n".join(args.lines).encode("utf-8", "surrogateescape") if args.lines else _read_stdin()
    # Blank lines go first so the parser's line numbers are those of the file written.
    lines = [line.rstrip(b"\r") for line in raw.split(b"\n") if line.strip()]
    data = b"".join(line + b"\n" for line in lines)
    # The pipeline would refuse a bigger file unread: better not to write it.
    if len(data) > (max_bytes := Settings.from_environment().max_file_bytes):
        raise CliError(str(too_big(file_name, len(data), max_bytes)))
    try:
        books = parse_book_bytes(data, file_name)
    except BookFileError as error:
        raise CliError(str(error)) from None
    if create_folder:
        _create_books_folder()
    write_atomically(path, data)
    print(f"wrote {len(books)} book{'s' if len(books) != 1 else ''} to {path}")
    return EXIT_OK


def folder_to_write(books_dir: Path | None) -> tuple[Path, bool]:
    """The folder the pipeline reads, so a file added here is one it sees; and whether it is
    ./books still to be created (user files never go into the package's sample folder)."""
    chosen = books_dir or Settings.from_environment().books_dir
    folder = Settings(books_dir=chosen).books_folder
    if chosen:
        if not folder.is_dir():
            raise CliError(f"books folder does not exist: {folder}")
        return folder, False
    if not is_sample_folder(folder):
        return folder, False
    user_folder = Path(DEFAULT_BOOKS_DIR).resolve()
    if user_folder.exists():
        raise CliError(
            f"{user_folder} is not a folder; move it away, or choose the books folder with "
            f"--books-dir or {VARIABLES.books_dir.name}"
        )
    return user_folder, True


def _create_books_folder() -> None:
    folder, copied = create_user_books_dir()
    if copied:
        print(
            f"created the books folder {folder} with copies of the {len(copied)} bundled sample "
            "files; the pipeline reads it from now on instead of the samples in the package "
            "(sample books already loaded stay loaded; delete a copy to remove its books)"
        )


def book_file_name(name: str) -> str:
    """Refuse names the watcher would skip, or that would land outside the folder it watches."""
    file_name = name if name.endswith(BOOK_FILE_SUFFIX) else name + BOOK_FILE_SUFFIX
    if "/" in name or "\\" in name:
        raise CliError(f"NAME must be a plain file name without a folder, got {name!r}")
    if "\0" in name:
        raise CliError(f"NAME contains a NUL character: {name!r}")
    if not is_book_file_name(file_name):
        raise CliError(f"the pipeline skips files named {file_name!r} (hidden names are ignored)")
    return file_name


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see either no file or the whole file: the watcher skips `.part` names meanwhile."""
    descriptor, temporary_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".part"
    )
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(BOOK_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_stdin() -> bytes:
    """The raw bytes: the format is UTF-8 whatever the terminal's locale decodes stdin as."""
    if sys.stdin.isatty():
        print("reading book lines from stdin; end with Ctrl-D", file=sys.stderr)
    return sys.stdin.buffer.read()

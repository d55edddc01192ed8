"""The `book-pipeline` command: helpers around the books folder for people, not for Dagster runs.

Each subcommand is one small `run_*` function so new subcommands can be added without touching
the others; every refusal is a `CliError`, printed by `main` as one line instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from book_pipeline.book_files import BOOK_FILE_SUFFIX, is_book_file_name
from book_pipeline.parsing import BookFileError, parse_book_text

BOOKS_DIR_ENV = "BOOK_PIPELINE_BOOKS_DIR"
EXIT_OK = 0
EXIT_FAILED = 1
# The same code argparse uses for bad arguments: in both cases the user has to change the command.
EXIT_REFUSED = 2
# mkstemp creates 0600 files; the webserver or daemon reading the folder may run as another user.
BOOK_FILE_MODE = 0o644


class CliError(Exception):
    """A refusal the user can fix by changing the command; nothing was written."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"{parser.prog} {args.command}: failed: {error}", file=sys.stderr)
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="book-pipeline", description="Work with the book description files of book_pipeline."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_add_books_parser(subcommands)
    return parser


def _add_add_books_parser(subcommands: argparse._SubParsersAction) -> None:
    add_books = subcommands.add_parser(
        "add-books",
        help="write a new description file into the books folder",
        description="Write a new description file into the books folder. Every line is checked "
        "with the pipeline's own parser first, so the pipeline never picks up a file it would "
        "reject. Lines look like: <index> ::: <Title> (<Year>) ::: <Author> ::: <Description>",
    )
    add_books.add_argument("name", metavar="NAME", help=f"file name; '{BOOK_FILE_SUFFIX}' is added if missing")
    add_books.add_argument(
        "lines", metavar="LINE", nargs="*", help="book lines; read from stdin when none are given"
    )
    add_books.add_argument(
        "--books-dir",
        type=Path,
        help=f"books folder (default: ${BOOKS_DIR_ENV}, else the bundled sample folder)",
    )
    add_books.add_argument(
        "--overwrite", action="store_true", help="replace the file if it already exists"
    )
    add_books.set_defaults(handler=run_add_books)


def run_add_books(args: argparse.Namespace) -> int:
    file_name = book_file_name(args.name)
    lines = _non_blank(args.lines) if args.lines else _non_blank(_stdin_lines())
    text = "".join(f"{line}\n" for line in lines)
    try:
        books = parse_book_text(text, file_name)
    except BookFileError as error:
        raise CliError(str(error)) from None

    folder = (args.books_dir or default_books_dir()).expanduser().resolve()
    if not folder.is_dir():
        raise CliError(f"books folder does not exist: {folder}")
    path = folder / file_name
    if path.exists() and not args.overwrite:
        raise CliError(f"{path} already exists; pass --overwrite to replace it")
    write_atomically(path, text)
    print(f"wrote {len(books)} book{'s' if len(books) != 1 else ''} to {path}")
    return EXIT_OK


def default_books_dir() -> Path:
    """The folder the Dagster resources read, so a file added here is one the pipeline sees."""
    configured = os.environ.get(BOOKS_DIR_ENV)
    if configured:
        return Path(configured)
    # Imported only when needed: resources pulls in Dagster and Qdrant, seconds of startup.
    from book_pipeline.resources import SAMPLE_BOOKS_DIR

    return SAMPLE_BOOKS_DIR


def book_file_name(name: str) -> str:
    """Refuse names the watcher would skip, or that would land outside the folder it watches."""
    file_name = name if name.endswith(BOOK_FILE_SUFFIX) else name + BOOK_FILE_SUFFIX
    if "/" in name or "\\" in name:
        raise CliError(f"NAME must be a plain file name without a folder, got {name!r}")
    if "\0" in name or not is_book_file_name(file_name):
        raise CliError(
            f"{file_name!r} would be ignored by the pipeline "
            "(hidden, temporary or editor-backup names are skipped)"
        )
    return file_name


def write_atomically(path: Path, text: str) -> None:
    """Readers see either no file or the whole file: the watcher skips `.part` names meanwhile."""
    descriptor, temporary_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".part"
    )
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(BOOK_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _stdin_lines() -> list[str]:
    if sys.stdin.isatty():
        print("reading book lines from stdin; end with Ctrl-D", file=sys.stderr)
    # Split on "\n" only, as the parser does: splitlines() would also break at U+2028 and others.
    return [line.rstrip("\r") for line in sys.stdin.read().split("\n")]


def _non_blank(lines: Iterable[str]) -> list[str]:
    return [line for line in lines if line.strip()]

"""The `book-pipeline` command: the books folder and the loaded books, for people, not for Dagster.

Each subcommand is one small `run_*` function so new subcommands can be added without touching
the others; every refusal is a `CliError`, printed by `main` as one line instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from book_pipeline.book_files import (
    BOOK_FILE_SUFFIX,
    is_book_file_name,
    max_file_bytes_from_environment,
    too_big,
)
from book_pipeline.folders import (
    BOOKS_DIR_ENV,
    DEFAULT_BOOKS_DIR,
    SAMPLE_BOOKS_DIR,
    create_user_books_dir,
    default_books_dir,
    is_sample_folder,
)
from book_pipeline.parsing import BookFileError, parse_book_bytes, parse_year

DEFAULT_API_KEY_ENV = "QDRANT_API_KEY"
MIGRATE_BATCH_SIZE = 256
MIGRATE_PROGRESS_EVERY = 10_000
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
    _add_search_parser(subcommands)
    _add_status_parser(subcommands)
    _add_migrate_store_parser(subcommands)
    return parser


def _add_add_books_parser(subcommands: argparse._SubParsersAction) -> None:
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
        help=f"books folder (default: ${BOOKS_DIR_ENV}, else ./{DEFAULT_BOOKS_DIR}, created with "
        "copies of the bundled samples when it does not exist)",
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
    if len(data) > (max_bytes := max_file_bytes_from_environment()):
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


def _add_search_parser(subcommands: argparse._SubParsersAction) -> None:
    search = subcommands.add_parser(
        "search",
        help="find the loaded books closest to a sentence",
        description="Find the loaded books closest to a sentence, with the embedder and Qdrant "
        "the pipeline is configured with (the same environment variables). Refused when the "
        "configured model is not the one the collection was loaded with.",
    )
    search.add_argument("query", metavar="QUERY", help="what the book is about, in your words")
    search.add_argument("--limit", type=int, default=5, help="how many books (default: 5)")
    search.add_argument("--author", help="only books by exactly this author")
    search.add_argument(
        "--year-from", type=year_argument, metavar="YEAR", help="only books from YEAR on"
    )
    search.add_argument(
        "--year-to",
        type=year_argument,
        metavar="YEAR",
        help="only books up to YEAR; a year is written as in the files: 1815, -500, '500 BC'",
    )
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.add_argument(
        "--lock-wait",
        type=float,
        metavar="SECONDS",
        help="how long to wait while a running load holds the embedded Qdrant store "
        "(default: the pipeline's lock_wait_seconds)",
    )
    search.set_defaults(handler=run_search)


def run_search(args: argparse.Namespace) -> int:
    # Imported here: Dagster, Qdrant and the model take seconds that add-books need not pay.
    from book_pipeline.embedding import EmbeddingModelError
    from book_pipeline.resources import resources_outside_dagster
    from book_pipeline.search import SearchRefusedError, format_hits_table, search_books
    from book_pipeline.vector_store import CollectionMismatchError, StoreLockedError

    resources = resources_outside_dagster()
    qdrant = resources["qdrant"]
    if args.lock_wait is not None:
        qdrant = qdrant.model_copy(update={"lock_wait_seconds": args.lock_wait})
    try:
        embedder = resources["embedder"].get_embedder()
        # The store is opened for this one query only: a load waiting for it is held up briefly.
        with qdrant.open(on_wait=lambda message: print(message, file=sys.stderr)) as store:
            hits = search_books(
                store,
                embedder,
                args.query,
                args.limit,
                author=args.author,
                year_from=args.year_from,
                year_to=args.year_to,
            )
            size_warning = store.size_warning()
    except (
        SearchRefusedError,
        StoreLockedError,
        CollectionMismatchError,
        EmbeddingModelError,
    ) as error:
        raise CliError(str(error)) from None
    if size_warning:
        print(f"hint: {size_warning}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(hit) for hit in hits], ensure_ascii=False, indent=2))
    elif hits:
        print(format_hits_table(hits))
    else:
        print("no loaded book matches")
    return EXIT_OK


def _add_status_parser(subcommands: argparse._SubParsersAction) -> None:
    status = subcommands.add_parser(
        "status",
        help="list every description file with its state: loaded, pending, failed, removed",
        description="Compare the books folder with the load ledger (what runs actually loaded). "
        "Reads neither Qdrant nor Dagster, so it works while a load runs.",
    )
    status.add_argument("--json", action="store_true", help="print the files as JSON")
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    from book_pipeline.ops import review_books_folder
    from book_pipeline.resources import resources_outside_dagster
    from book_pipeline.status import folder_status, format_status_table

    resources = resources_outside_dagster()
    books_folder = resources["books_folder"]
    ledger = resources["pipeline_state"].ledger()
    try:
        review = review_books_folder(books_folder, ledger)
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    rows = folder_status(review, ledger.entries())
    if args.json:
        print(json.dumps([asdict(row) for row in rows], ensure_ascii=False, indent=2))
    else:
        print(f"books folder: {_describe_books_folder(books_folder.folder)}")
        print(format_status_table(rows))
    return EXIT_OK


def _describe_books_folder(folder: Path) -> str:
    if not is_sample_folder(folder):
        return str(folder)
    return (
        f"{folder} (the bundled samples, read while {Path(DEFAULT_BOOKS_DIR).resolve()} does not "
        "exist; book-pipeline add-books creates it)"
    )


def _add_migrate_store_parser(subcommands: argparse._SubParsersAction) -> None:
    migrate = subcommands.add_parser(
        "migrate-store",
        help="copy the embedded Qdrant collection to a Qdrant server (or another folder)",
        description="Copy the configured collection of the embedded Qdrant store, vectors and "
        "payloads, to a Qdrant server (--to-url) or another embedded folder (--to-path, e.g. a "
        "backup). Nothing is re-embedded. The target collection is created with the same "
        "dimension and model and the configured QDRANT_* layout (shards, replicas, on-disk "
        "vectors, ...), or must already be one for the same model. Safe to run again.",
    )
    target = migrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-url", metavar="URL", help="a Qdrant server, e.g. http://host:6333")
    target.add_argument("--to-path", type=Path, metavar="PATH", help="another embedded store")
    migrate.add_argument(
        "--to-api-key-env",
        metavar="VAR",
        help=f"the NAME of the environment variable holding the server's API key (default: "
        f"{DEFAULT_API_KEY_ENV}, if set); never the key itself",
    )
    migrate.add_argument(
        "--to-collection", metavar="NAME", help="target collection (default: the same name)"
    )
    migrate.add_argument(
        "--from-path",
        type=Path,
        metavar="PATH",
        help="the embedded store to copy (default: the pipeline's, $BOOK_PIPELINE_DATA_DIR/qdrant)",
    )
    migrate.add_argument(
        "--batch-size",
        type=int,
        default=MIGRATE_BATCH_SIZE,
        metavar="N",
        help=f"points per request (default: {MIGRATE_BATCH_SIZE})",
    )
    migrate.set_defaults(handler=run_migrate_store)


def run_migrate_store(args: argparse.Namespace) -> int:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from book_pipeline.migration import MigrationError, copy_collection
    from book_pipeline.resources import resources_outside_dagster
    from book_pipeline.vector_store import (
        CollectionMismatchError,
        StoreLockedError,
        StoreUnreachableError,
        open_vector_store,
    )

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    api_key = _api_key_from_environment(args.to_api_key_env) if args.to_url else None
    qdrant = resources_outside_dagster()["qdrant"]
    source_path = (args.from_path or Path(qdrant.local_path)).expanduser().resolve()
    if not source_path.is_dir():
        raise CliError(f"no embedded Qdrant store at {source_path}")
    target_collection = args.to_collection or qdrant.collection
    if args.to_path is not None and args.to_path.expanduser().resolve() == source_path:
        raise CliError(f"--to-path is the store being copied ({source_path})")
    target_name = args.to_url or str(args.to_path.expanduser().resolve())

    def progress(copied: int) -> None:
        if copied % MIGRATE_PROGRESS_EVERY < args.batch_size:
            print(f"  {copied:,} points copied", file=sys.stderr)

    try:
        with (
            open_vector_store(
                qdrant.collection,
                source_path,
                lock_wait_seconds=qdrant.lock_wait_seconds,
                on_wait=lambda message: print(message, file=sys.stderr),
            ) as source,
            open_vector_store(
                target_collection,
                args.to_path.expanduser().resolve() if args.to_path else source_path,
                url=args.to_url,
                api_key=api_key,
                settings=qdrant.collection_settings,
            ) as target,
        ):
            print(
                f"copying collection {qdrant.collection!r} ({source.count():,} points) of the "
                f"embedded store {source_path} to collection {target_collection!r} at {target_name}"
            )
            copied = copy_collection(source, target, args.batch_size, on_batch=progress)
            target_count = target.count()
    except (
        MigrationError,
        CollectionMismatchError,
        StoreLockedError,
        StoreUnreachableError,
    ) as error:
        raise CliError(str(error)) from None
    except UnexpectedResponse as error:
        # Its text is the server's answer (status and body); the request and its key are not in it.
        raise CliError(f"the Qdrant server at {target_name} refused: {error}") from None
    except ResponseHandlingException as error:
        raise CliError(
            f"lost the Qdrant server at {target_name} ({error}); run the command again, "
            "it is safe to repeat"
        ) from None
    print(
        f"copied {copied:,} points; collection {target_collection!r} at {target_name} "
        f"holds {target_count:,} points"
    )
    if args.to_url:
        print(f"to use it: export QDRANT_URL={args.to_url} (and QDRANT_API_KEY if it needs one)")
    return EXIT_OK


def _api_key_from_environment(variable: str | None) -> str | None:
    """The key is read from a variable named on the command line: argv is visible to every user."""
    name = variable or DEFAULT_API_KEY_ENV
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise CliError(
            "--to-api-key-env takes the name of an environment variable that holds the key, "
            "not the key itself"
        )
    key = os.environ.get(name)
    if variable is not None and not key:
        raise CliError(f"the environment variable {name} is not set")
    return key or None


def folder_to_write(books_dir: Path | None) -> tuple[Path, bool]:
    """The folder the pipeline reads, so a file added here is one it sees; and whether it is
    ./books still to be created (user files never go into the package's sample folder)."""
    chosen = books_dir or os.environ.get(BOOKS_DIR_ENV)
    if chosen:
        folder = Path(chosen).expanduser().resolve()
        if not folder.is_dir():
            raise CliError(f"books folder does not exist: {folder}")
        return folder, False
    folder = default_books_dir()
    if not is_sample_folder(folder):
        return folder, False
    user_folder = Path(DEFAULT_BOOKS_DIR).resolve()
    if user_folder.exists():
        raise CliError(
            f"{user_folder} is not a folder; move it away, or choose the books folder with "
            f"--books-dir or {BOOKS_DIR_ENV}"
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


def year_argument(text: str) -> int:
    """A year as the files write it; argparse names the option and shows the message."""
    try:
        return parse_year(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a year, found {text!r}; {error}") from None


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

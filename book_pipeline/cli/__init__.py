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
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from book_pipeline.core.book_files import BOOK_FILE_SUFFIX, is_book_file_name, too_big
from book_pipeline.core.folders import (
    BOOKS_DIR_ENV,
    DEFAULT_BOOKS_DIR,
    SAMPLE_BOOKS_DIR,
    create_user_books_dir,
    default_books_dir,
    is_sample_folder,
)
from book_pipeline.core.parsing import BookFileError, parse_book_bytes, parse_year
from book_pipeline.core.settings import QDRANT_API_KEY_ENV, Settings, SettingsError

if TYPE_CHECKING:
    from book_pipeline.core.vector_store import BookVectorStore
DEFAULT_API_KEY_ENV = QDRANT_API_KEY_ENV
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
    except (CliError, SettingsError) as error:
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
    _add_info_parser(subcommands)
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
    # Imported here: the model and Qdrant take time that add-books and status need not pay.
    from book_pipeline.core.embedding import EmbeddingModelError, configured_embedder
    from book_pipeline.core.search import SearchRefusedError, format_hits_table, search_books
    from book_pipeline.core.vector_store import open_configured_store

    settings = Settings.from_environment()
    try:
        embedder = configured_embedder(
            settings.embedder,
            settings.embedding_model,
            settings.model_cache_dir,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            on_error_response=_say,
        )
        # The store is opened for this one query only: a load waiting for it is held up briefly.
        with open_configured_store(settings, _say, args.lock_wait) as store:
            hits = search_books(
                store,
                embedder,
                args.query,
                args.limit,
                author=args.author,
                year_from=args.year_from,
                year_to=args.year_to,
            )
    except (SearchRefusedError, EmbeddingModelError, *_store_errors()) as error:
        raise CliError(str(error)) from None
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
    from book_pipeline.core.ledger import LoadLedger, review_books_folder
    from book_pipeline.core.status import folder_status, format_status_table

    settings = Settings.from_environment()
    books_folder = settings.books_folder
    ledger = LoadLedger(settings.ledger_path)
    try:
        review = review_books_folder(books_folder, ledger)
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    rows = folder_status(review, ledger.entries())
    if args.json:
        print(json.dumps([asdict(row) for row in rows], ensure_ascii=False, indent=2))
    else:
        print(f"books folder: {_describe_books_folder(books_folder)}")
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
        help="copy the Qdrant collection between the embedded store, a server, another folder",
        description="Copy the configured collection, vectors and payloads, from the configured "
        "store (the embedded Qdrant Edge store, or $QDRANT_URL when set) or the one named by "
        "--from-*, to a Qdrant server (--to-url) or an embedded folder (--to-path: Edge, e.g. "
        "a server's collection brought home, or a backup). --from-legacy copies the previous "
        "version's embedded store (qdrant-client local mode, $BOOK_PIPELINE_DATA_DIR/qdrant) into "
        "the configured store, as the first run does. Nothing is re-embedded; the copy is checked "
        "by count and sampled vectors. A new target collection gets the same dimension and model "
        "and the configured QDRANT_* layout (shards, replicas, on-disk vectors, ...); an existing "
        "one must be for the same model. Safe to run again.",
    )
    source = migrate.add_mutually_exclusive_group()
    source.add_argument("--from-url", metavar="URL", help="copy from this Qdrant server")
    source.add_argument(
        "--from-path", type=Path, metavar="PATH", help="copy from this embedded (Edge) store"
    )
    source.add_argument(
        "--from-legacy",
        type=Path,
        nargs="?",
        const=_LEGACY_DEFAULT,
        metavar="PATH",
        help="copy from the previous version's store (default: $BOOK_PIPELINE_DATA_DIR/qdrant)",
    )
    target = migrate.add_mutually_exclusive_group()
    target.add_argument("--to-url", metavar="URL", help="a Qdrant server, e.g. http://host:6333")
    target.add_argument("--to-path", type=Path, metavar="PATH", help="an embedded (Edge) store")
    for end in ("from", "to"):
        migrate.add_argument(
            f"--{end}-api-key-env",
            metavar="VAR",
            help=f"the NAME of the environment variable holding the {end} server's API key "
            f"(default: {DEFAULT_API_KEY_ENV}, if set); never the key itself",
        )
    migrate.add_argument(
        "--to-collection", metavar="NAME", help="target collection (default: the same name)"
    )
    migrate.add_argument(
        "--batch-size",
        type=int,
        default=MIGRATE_BATCH_SIZE,
        metavar="N",
        help=f"points per request (default: {MIGRATE_BATCH_SIZE})",
    )
    migrate.set_defaults(handler=run_migrate_store)


# argparse's marker for a bare --from-legacy: the configured data folder's old store.
_LEGACY_DEFAULT = Path("\0legacy")


def run_migrate_store(args: argparse.Namespace) -> int:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from book_pipeline.core.edge_store import EdgeStore
    from book_pipeline.core.migration import (
        copy_collection,
        local_mode_has_collection,
        upgrade_local_mode_store,
    )
    from book_pipeline.core.vector_store import open_vector_store

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    settings = Settings.from_environment()
    collection = settings.collection
    edge_path = settings.edge_path.expanduser().resolve()
    to_path = args.to_path.expanduser().resolve() if args.to_path else None
    target_collection = args.to_collection or collection
    server_name = args.to_url or args.from_url or settings.qdrant_url
    say = _say

    def progress(copied: int) -> None:
        if copied % MIGRATE_PROGRESS_EVERY < args.batch_size:
            say(f"  {copied:,} points copied")

    def open_target(url: str | None, path: Path) -> AbstractContextManager[BookVectorStore]:
        return open_vector_store(
            target_collection,
            path,
            url=url,
            api_key=_api_key_from_environment(args.to_api_key_env) if url else None,
            lock_wait_seconds=settings.lock_wait_seconds,
            on_wait=say,
            settings=settings.collection_settings,
        )

    try:
        if args.from_legacy is not None:
            legacy = args.from_legacy
            if legacy == _LEGACY_DEFAULT:
                legacy = settings.legacy_path
            legacy = legacy.expanduser().resolve()
            if not local_mode_has_collection(legacy, collection):
                raise CliError(
                    f"no collection {collection!r} in a previous version's store at {legacy}"
                )
            target_url = args.to_url or (None if to_path else settings.qdrant_url)
            with open_target(target_url, to_path or edge_path) as target:
                target_name = target.location
                if isinstance(target, EdgeStore) and not target.collection_exists():
                    copied = upgrade_local_mode_store(legacy, target, say, args.batch_size)
                else:
                    from book_pipeline.core.server_store import open_local_mode_store

                    source = open_local_mode_store(legacy, collection)
                    try:
                        copied = copy_collection(source, target, args.batch_size, progress)
                    finally:
                        source.close()
                target_count = target.count()
        else:
            if args.to_url is None and to_path is None:
                raise CliError("say where to copy to: --to-url URL or --to-path PATH")
            from_url = args.from_url or (None if args.from_path else settings.qdrant_url)
            from_path = (args.from_path or settings.edge_path).expanduser().resolve()
            if from_url is None and not (from_path / collection).is_dir():
                raise CliError(f"no embedded Qdrant store at {from_path}")
            if to_path is not None and from_url is None and to_path == from_path:
                raise CliError(f"--to-path is the store being copied ({from_path})")
            with (
                open_vector_store(
                    collection,
                    from_path,
                    url=from_url,
                    api_key=_api_key_from_environment(args.from_api_key_env) if from_url else None,
                    lock_wait_seconds=settings.lock_wait_seconds,
                    on_wait=say,
                ) as source,
                open_target(args.to_url, to_path or edge_path) as target,
            ):
                target_name = target.location
                print(
                    f"copying collection {collection!r} ({source.count():,} points) of "
                    f"{source.engine} {source.location} to collection {target_collection!r} at "
                    f"{target_name}"
                )
                copied = copy_collection(source, target, args.batch_size, on_batch=progress)
                target_count = target.count()
    except _store_errors() as error:
        raise CliError(str(error)) from None
    except UnexpectedResponse as error:
        # Its text is the server's answer (status and body); the request and its key are not in it.
        raise CliError(f"the Qdrant server at {server_name} refused: {error}") from None
    except ResponseHandlingException as error:
        raise CliError(
            f"lost the Qdrant server at {server_name} ({error}); run the command again, "
            "it is safe to repeat"
        ) from None
    print(
        f"copied {copied:,} points; collection {target_collection!r} at {target_name} "
        f"holds {target_count:,} points"
    )
    if args.to_url:
        print(f"to use it: export QDRANT_URL={args.to_url} (and QDRANT_API_KEY if it needs one)")
    return EXIT_OK


def _add_info_parser(subcommands: argparse._SubParsersAction) -> None:
    info = subcommands.add_parser(
        "info",
        help="which Qdrant store the pipeline uses, and what it holds",
        description="The configured store (the embedded Qdrant Edge store, or $QDRANT_URL): "
        "engine, location, collection, exact point count, embedding model and dimension. Waits "
        "like a search while a load holds the embedded store.",
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from book_pipeline.core.vector_store import open_configured_store

    try:
        with open_configured_store(Settings.from_environment(), _say) as store:
            model: str | None = None
            dimension: int | None = None
            if store.collection_exists():
                dimension, model = store.collection_model()
            info = {
                "engine": store.engine,
                "location": store.location,
                "collection": store.collection,
                "points": store.count(),
                "model": model,
                "dimension": dimension,
            }
    except _store_errors() as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            print(f"{key + ':':<{width + 1}} {'-' if value is None else value}")
    return EXIT_OK


def _say(message: str) -> None:
    """Progress and waits go to stderr: stdout holds the answer, which --json keeps parseable."""
    print(message, file=sys.stderr)


def _store_errors() -> tuple[type[Exception], ...]:
    """What opening, reading or copying a store refuses with, each message naming the store."""
    from book_pipeline.core.migration import MigrationError
    from book_pipeline.core.vector_store import (
        CollectionMismatchError,
        StoreDamagedError,
        StoreLockedError,
        StoreUnreachableError,
    )

    return (
        MigrationError,
        CollectionMismatchError,
        StoreLockedError,
        StoreDamagedError,
        StoreUnreachableError,
    )


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

"""`book-pipeline forget FILE...`: remove the books of files that left the books folder, on
purpose, when the removal guard held their removal back (or before a run does it)."""

from __future__ import annotations

import argparse

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.settings import Settings


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    forget = subcommands.add_parser(
        "forget",
        help="remove the books of files that left the books folder, on purpose",
        description="Remove from the collection the books of the named files, which must have "
        "left the books folder, and record it in the load ledger: what a run does by itself "
        "for a few deleted files, and holds back when many left at once or the folder is empty "
        "(BOOK_PIPELINE_MAX_REMOVED_FILES_PER_RUN). Refused, with nothing removed, for a file "
        "still in the folder or one the collection holds no book of. Waits like a load while "
        "another process holds the embedded store.",
    )
    forget.add_argument("files", metavar="FILE", nargs="+", help="a file name, as status shows")
    forget.set_defaults(handler=run_forget)


def run_forget(args: argparse.Namespace) -> int:
    from book_pipeline.core.ingest.ledger import LoadLedger
    from book_pipeline.core.ingest.removal_guard import ForgetRefusedError, forget_files
    from book_pipeline.core.store.opening import open_configured_store

    settings = Settings.from_environment()
    try:
        with open_configured_store(settings, say) as store:
            forgotten = forget_files(
                store, LoadLedger(settings.ledger_path), settings.books_folder, args.files
            )
            location, collection = store.location, store.collection
    except (ForgetRefusedError, FileNotFoundError, *store_errors()) as error:
        raise CliError(str(error)) from None
    print(
        f"removed the books of {len(forgotten)} file(s) from the Qdrant collection "
        f"{collection!r} at {location}: {', '.join(forgotten)}"
    )
    return EXIT_OK

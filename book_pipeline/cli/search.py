"""`book-pipeline search`: the loaded books closest to a sentence, with the configured embedder
and store; loads only those two (the bundled model without fastembed, see
`core/query_embedding.py`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.parsing import parse_year
from book_pipeline.core.settings import Settings


def add_parser(subcommands: argparse._SubParsersAction) -> None:
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
    from book_pipeline.core.embedding import EmbeddingModelError
    from book_pipeline.core.query_embedding import query_embedder
    from book_pipeline.core.search import SearchRefusedError, format_hits_table, search_books
    from book_pipeline.core.vector_store import open_configured_store

    settings = Settings.from_environment()
    try:
        embedder = query_embedder(settings, on_error_response=say)
        # The store is opened for this one query only: a load waiting for it is held up briefly.
        with open_configured_store(settings, say, args.lock_wait) as store:
            hits = search_books(
                store,
                embedder,
                args.query,
                args.limit,
                author=args.author,
                year_from=args.year_from,
                year_to=args.year_to,
            )
    except (SearchRefusedError, EmbeddingModelError, *store_errors()) as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps([asdict(hit) for hit in hits], ensure_ascii=False, indent=2))
    elif hits:
        print(format_hits_table(hits))
    else:
        print("no loaded book matches")
    return EXIT_OK


def year_argument(text: str) -> int:
    """A year as the files write it; argparse names the option and shows the message."""
    try:
        return parse_year(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a year, found {text!r}; {error}") from None

"""`book-pipeline search`: the loaded books that best match a sentence (by meaning, by words, or
both), or that are most like given books, with the configured embedder and store; loads only
those two (the bundled model without fastembed, see `core/embedding/query.py`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.books.parsing import parse_year
from book_pipeline.core.settings import Settings

# The modes, spelled here too: importing them from the store module would load numpy for --help.
SEARCH_MODES = ("hybrid", "dense", "keyword")


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    search = subcommands.add_parser(
        "search",
        help="find the loaded books that match a sentence, or are like given books",
        description="Find the loaded books that best match a sentence, with the embedder and "
        "Qdrant the pipeline is configured with (the same environment variables): by meaning "
        "(dense), by the words of their title, author and description (keyword, BM25), or both "
        "fused (hybrid, the default). With --like, the books most like the given ones instead. "
        "Queries are embedded with the model the current collection version was built with, "
        "so search keeps answering while a new model's version is built.",
    )
    search.add_argument(
        "query",
        metavar="QUERY",
        nargs="?",
        default="",
        help="what the book is about, or its title or author, in your words (optional with --like)",
    )
    search.add_argument(
        "--mode",
        choices=SEARCH_MODES,
        help="hybrid (default): meaning and words fused; dense: meaning only; keyword: words "
        "only. A collection loaded by an earlier release answers dense only until upgraded.",
    )
    search.add_argument(
        "--like",
        action="append",
        default=[],
        metavar="TITLE",
        help="books like this one (repeatable): its exact title, or FILE:INDEX when several "
        "books share the title (e.g. gothic_horror.txt:501). The given books are never listed.",
    )
    search.add_argument(
        "--unlike",
        action="append",
        default=[],
        metavar="TITLE",
        help="with --like: steer away from this book (repeatable; a title or FILE:INDEX)",
    )
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
    from book_pipeline.core.embedding.base import EmbeddingModelError
    from book_pipeline.core.embedding.choosing import choose_embedder, configured_model_name
    from book_pipeline.core.ingest.rebuild import current_version
    from book_pipeline.core.search import SearchRefusedError, format_hits_table, search_books
    from book_pipeline.core.store.opening import open_configured_versions

    settings = Settings.from_environment()
    try:
        # The store is opened for this one query only: a load waiting for it is held up briefly.
        with open_configured_versions(settings, say, args.lock_wait, read_only=True) as catalog:
            # The current version's own model embeds the query, whatever is configured: while
            # a new model's version is being built, search reads the old one.
            store, choice = current_version(
                catalog, settings.embedder_choice, configured_model_name(settings.embedder_choice)
            )
            embedder = choose_embedder(choice, for_query=True, on_error_response=say)
            hits = search_books(
                store,
                embedder,
                args.query,
                args.limit,
                author=args.author,
                year_from=args.year_from,
                year_to=args.year_to,
                mode=args.mode,
                like=args.like,
                unlike=args.unlike,
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

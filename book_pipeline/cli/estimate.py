"""`book-pipeline estimate`: what embedding the pending files will cost, before a run: the
files, their books, the texts the embedding cache already holds, the tokens to pay for and their
price. Calls no API."""

from __future__ import annotations

import argparse
import json

from book_pipeline.cli.common import EXIT_OK, say
from book_pipeline.cli.status import read_books_folder
from book_pipeline.core.settings import Settings


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    estimate = subcommands.add_parser(
        "estimate",
        help="what embedding the pending files will cost: files, books, cached texts, tokens",
        description="Read the pending files (those the next run embeds: new, changed, or not "
        "held by the store as recorded), look their texts up in the embedding cache, and count "
        "the tokens of the others with OpenAI's cl100k_base tokenizer, offline: exact for "
        "OpenAI's embedding models, an estimate for any other. Priced at the configured "
        "model's price (BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK, or its list price). Calls no "
        "API. A sensor's runs take at most BOOK_PIPELINE_MAX_FILES_PER_RUN of these files each.",
    )
    estimate.add_argument(
        "--json",
        action="store_true",
        help="print one object: files, books, cached_texts, tokens, cost_usd (null: price "
        "unknown), exact_tokens",
    )
    estimate.set_defaults(handler=run_estimate)


def run_estimate(args: argparse.Namespace) -> int:
    from book_pipeline.core.embedding.cache import open_embedding_cache
    from book_pipeline.core.embedding.choosing import recorded_model_name
    from book_pipeline.core.embedding.costs import (
        counts_exactly,
        describe_cost,
        describe_price,
        price_per_mtok,
    )
    from book_pipeline.core.embedding.estimate import estimate_embedding
    from book_pipeline.core.ingest.ledger import LoadLedger

    settings = Settings.from_environment()
    reading = read_books_folder(settings, LoadLedger(settings.ledger_path))
    model = recorded_model_name(settings.embedder_choice)
    price = price_per_mtok(settings.embedder, model, settings.embedding_price_per_mtok)
    estimate = estimate_embedding(
        reading.review.pending,
        settings.books_folder,
        settings.max_file_bytes,
        open_embedding_cache(settings.embedding_cache_path, settings.embedding_cache_mb),
        model,
        price,
        counts_exactly(settings.embedder, model),
    )
    if args.json:
        print(
            json.dumps(
                {
                    "files": len(estimate.files),
                    "books": estimate.books,
                    "cached_texts": estimate.cached_texts,
                    "tokens": estimate.tokens,
                    "cost_usd": estimate.cost_usd,
                    "exact_tokens": estimate.exact_tokens,
                }
            )
        )
        return EXIT_OK
    for name in estimate.files:
        print(name)
    for name in estimate.refused:
        say(f"{name}: the run would refuse it (book-pipeline status, after the run, says why)")
    counted = "exactly" if estimate.exact_tokens else "estimated with cl100k_base"
    billing = "" if settings.embedder == "openai" else " (a local model: not billed by the token)"
    print(
        f"{len(estimate.files)} file(s) to embed, {estimate.books} book(s), "
        f"{estimate.cached_texts} text(s) already in the embedding cache\n"
        f"{estimate.tokens} token(s) to pay for ({counted}), "
        f"{describe_cost(estimate.cost_usd)} ({describe_price(model, price)}){billing}"
    )
    return EXIT_OK

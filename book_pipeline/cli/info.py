"""`book-pipeline info`: which Qdrant store the pipeline uses, and what it holds."""

from __future__ import annotations

import argparse
import json

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.settings import Settings


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    info = subcommands.add_parser(
        "info",
        help="which Qdrant store the pipeline uses, and what it holds",
        description="The configured store (the embedded Qdrant Edge store, or $QDRANT_URL): "
        "engine, location, collection, exact point count, embedding model and dimension, and the "
        "search modes the collection can answer. Waits like a search while a load holds the "
        "embedded store.",
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from book_pipeline.core.store.opening import open_configured_store

    try:
        with open_configured_store(Settings.from_environment(), say) as store:
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
                "search_modes": list(store.search_modes()) if store.collection_exists() else [],
            }
    except store_errors() as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            shown = (", ".join(value) or None) if isinstance(value, list) else value
            print(f"{key + ':':<{width + 1}} {'-' if shown is None else shown}")
    return EXIT_OK

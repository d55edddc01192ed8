"""`book-pipeline info`: which Qdrant store the pipeline uses, and what it holds."""

from __future__ import annotations

import argparse
import json

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.cli.versions import describe_versions, format_versions
from book_pipeline.core.settings import Settings

_BYTE_COUNTS = ("size_on_disk", "free_space")


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    info = subcommands.add_parser(
        "info",
        help="which Qdrant store the pipeline uses, and what it holds",
        description="The configured store (the embedded Qdrant Edge store, or $QDRANT_URL): "
        "engine, location, collection, exact point count (and how many are not this "
        "pipeline's: loaded by another one sharing the collection), embedding model and "
        "dimension, the "
        "search modes the collection can answer, and for the embedded store its size on disk "
        "and the free space of its filesystem. Waits like a search while a load holds the "
        "embedded store.",
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from book_pipeline.core.ingest.ledger import LoadLedger
    from book_pipeline.core.ingest.ownership import points_of_other_pipelines
    from book_pipeline.core.runtime.disk_space import describe_bytes, folder_size_bytes, free_bytes
    from book_pipeline.core.store.base import EDGE_ENGINE
    from book_pipeline.core.store.opening import open_configured_versions

    settings = Settings.from_environment()
    try:
        with open_configured_versions(settings, say, read_only=True) as catalog:
            store = catalog.open(catalog.current_name())
            model: str | None = None
            dimension: int | None = None
            others = 0
            if store.collection_exists():
                dimension, model = store.collection_model()
                others = points_of_other_pipelines(store, LoadLedger(settings.ledger_path))
            info = {
                "engine": store.engine,
                "location": store.location,
                "collection": store.collection,
                "points": store.count(),
                # Not this pipeline's: loaded by another sharing the collection, left alone.
                "other_points": others,
                "model": model,
                "dimension": dimension,
                "search_modes": list(store.search_modes()) if store.collection_exists() else [],
                # The embedded store's folder: what it takes, and what its filesystem has left
                # (a load refuses to write when that is too little). A server's are its own.
                "size_on_disk": None,
                "free_space": None,
                # One per embedding model (`book-pipeline versions`); the above is the current.
                "versions": describe_versions(catalog, settings, LoadLedger(settings.ledger_path)),
            }
            if store.engine == EDGE_ENGINE:
                info["size_on_disk"] = folder_size_bytes(settings.edge_path)
                info["free_space"] = free_bytes(settings.edge_path)
    except store_errors() as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            if key == "versions":
                print(f"{key + ':':<{width + 1}}\n{format_versions(value)}")
                continue
            shown = (", ".join(value) or None) if isinstance(value, list) else value
            if key in _BYTE_COUNTS and value is not None:
                shown = describe_bytes(value)
            print(f"{key + ':':<{width + 1}} {'-' if shown is None else shown}")
    return EXIT_OK

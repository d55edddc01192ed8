"""`book-pipeline status`: every description file and its state, from the folder and the load
ledger; reads neither Qdrant nor the model."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from book_pipeline.cli.common import EXIT_OK, CliError
from book_pipeline.core.folders import (
    DEFAULT_BOOKS_DIR,
    is_sample_folder,
)
from book_pipeline.core.settings import Settings


def add_parser(subcommands: argparse._SubParsersAction) -> None:
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

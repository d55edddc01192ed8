"""The `book-pipeline` command: the books folder and the loaded books, for people, not for Dagster.

One module per subcommand (`add_books`, `search`, `status`, `estimate`, `forget`,
`migrate_store`, `info`, `versions`), each with its `add_parser` and `run_*` function, so a
subcommand is changed without reading the others; every refusal is a `CliError`, printed by
`main` as one line instead of a traceback. Nothing here imports Dagster: the configuration is
`book_pipeline.core.settings`, and each subcommand imports the heavy parts it needs (the model,
Qdrant) only when it runs.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable

from book_pipeline.cli import (
    add_books,
    estimate,
    forget,
    info,
    migrate_store,
    search,
    status,
    versions,
)
from book_pipeline.cli.common import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, CliError
from book_pipeline.core.settings import SettingsError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "CliError", "build_parser", "main"]


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
    finally:
        if argv is None:
            # The console script: the process exits next. Its objects (the model's among them)
            # die with it; the interpreter's last garbage collection over them was a visible share
            # of search's wall time (bench/cli_benchmark.py; the figure in docs/benchmarks.md).
            gc.freeze()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="book-pipeline", description="Work with the book description files of book_pipeline."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in (add_books, search, status, estimate, forget, migrate_store, info, versions):
        subcommand.add_parser(subcommands)
    return parser

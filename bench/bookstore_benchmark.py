"""Bookstore customers' queries: how many find a right book in the top 3, per kind and mode.

    python bench/bookstore_benchmark.py --books DIR --queries FILE [--modes dense,keyword,hybrid]
        [--json]

DIR holds book files (`<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>`); they are
parsed, embedded with the configured model and loaded by the load step's own core
(`load_books`: points, the collection's load sequence, a ledger) into a new Qdrant Edge store in
a temporary folder. FILE is tab-separated, `query<TAB>kind<TAB>relevant` (a header line with
those names is skipped), `relevant` the right titles separated by ` | `. Every query is answered
in every mode by `search_books`, the function `book-pipeline search` calls, with the embedder that
command uses; a query is found when one of its right titles is among the first 3 hits.

With --json it prints one JSON object:
`{"books": N, "queries": N, "modes": {"hybrid": {"found": n, "by_kind": {"author_full":
[found, total], ...}}, ...}}`; else a table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.base import Embedder
from book_pipeline.core.embedding.choosing import choose_embedder
from book_pipeline.core.ingest.ledger import LoadLedger
from book_pipeline.core.ingest.loading import load_books
from book_pipeline.core.search import search_books
from book_pipeline.core.settings import Settings
from book_pipeline.core.store.base import SEARCH_MODES, BookVectorStore
from book_pipeline.core.store.opening import open_vector_store

TOP = 3
RELEVANT_SEPARATOR = " | "
HEADER = ("query", "kind", "relevant")


class QueriesFileError(ValueError):
    """The queries file cannot be read; the message names file and line."""


@dataclass(frozen=True)
class CustomerQuery:
    text: str
    kind: str
    relevant: frozenset[str]


def read_queries(path: Path) -> list[CustomerQuery]:
    queries = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip() or (line_number == 1 and tuple(fields) == HEADER):
            continue
        if len(fields) != len(HEADER) or not all(field.strip() for field in fields):
            raise QueriesFileError(
                f"{path}:{line_number}: expected query<TAB>kind<TAB>relevant, got {line!r}"
            )
        text, kind, relevant = (field.strip() for field in fields)
        titles = frozenset(title.strip() for title in relevant.split(RELEVANT_SEPARATOR))
        queries.append(CustomerQuery(text, kind, titles))
    if not queries:
        raise QueriesFileError(f"{path}: no queries")
    return queries


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_folder(store: BookVectorStore, books: Path, ledger: Path, embedder: Embedder) -> int:
    """Every book file of the folder loaded as a run loads them; the store's count."""
    files = []
    for path in list_book_files(books):
        parsed = parse_book_file(path)
        files.append((parsed, embedder.embed([book.embedding_text for book in parsed.books])))
    outcome = load_books(store, LoadLedger(ledger), books, files, embedder.model_name, True)
    return outcome.collection_size


def found_by_kind(
    store: BookVectorStore, searcher: Embedder, queries: list[CustomerQuery], mode: str
) -> dict[str, list[int]]:
    """[found, total] per kind, kinds in the order the file first names them."""
    by_kind: dict[str, list[int]] = {}
    for query in queries:
        hits = search_books(store, searcher, query.text, TOP, mode=mode)
        counts = by_kind.setdefault(query.kind, [0, 0])
        counts[0] += any(hit.title in query.relevant for hit in hits)
        counts[1] += 1
    return by_kind


def run(books: Path, queries_file: Path, modes: list[str]) -> dict:
    queries = read_queries(queries_file)
    settings = Settings.from_environment()
    embedder = choose_embedder(settings.embedder_choice)
    searcher = choose_embedder(settings.embedder_choice, for_query=True)
    with (
        tempfile.TemporaryDirectory(prefix="book_pipeline_bookstore_") as scratch,
        open_vector_store("bookstore_benchmark", Path(scratch) / "edge") as store,
    ):
        loaded = load_folder(store, books, Path(scratch) / "ledger.sqlite", embedder)
        say(f"loaded {loaded} books; answering {len(queries)} queries in {', '.join(modes)}")
        results = {}
        for mode in modes:
            by_kind = found_by_kind(store, searcher, queries, mode)
            results[mode] = {"found": sum(f for f, _ in by_kind.values()), "by_kind": by_kind}
    return {"books": loaded, "queries": len(queries), "modes": results}


def table(result: dict) -> str:
    modes = result["modes"]
    kinds = list(next(iter(modes.values()))["by_kind"])
    header = ["mode", *kinds, "all"]
    rows = [
        [mode, *(f"{f}/{t}" for f, t in found["by_kind"].values()), f"{found['found']}/"
         f"{result['queries']}"]
        for mode, found in modes.items()
    ]  # fmt: skip
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def mode_list(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in SEARCH_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {', '.join(unknown) or '(none given)'}: expected some of "
            f"{', '.join(SEARCH_MODES)}"
        )
    return list(dict.fromkeys(modes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--books", type=Path, required=True, help="folder of book files")
    parser.add_argument("--queries", type=Path, required=True, help="query<TAB>kind<TAB>relevant")
    parser.add_argument("--modes", type=mode_list, default=list(SEARCH_MODES))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        result = run(args.books, args.queries, args.modes)
    except (QueriesFileError, UnicodeDecodeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

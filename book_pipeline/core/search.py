"""Searching the loaded books with a sentence: the query is embedded like the books were.

Pure functions on a `BookVectorStore` and an `Embedder`, shared by the CLI, the `query_data` job
and the retrieval asset check, so all three refuse the same things with the same messages.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from book_pipeline.core.embedding import Embedder
from book_pipeline.core.parsing import format_year
from book_pipeline.core.vector_store import BookFilter, BookVectorStore, ScoredPoint

TABLE_DESCRIPTION_CHARS = 60
MARKDOWN_DESCRIPTION_CHARS = 120
_COLUMNS = ("rank", "score", "title", "year", "author", "description", "source file")


class SearchRefusedError(RuntimeError):
    """A search that cannot give meaningful results; the message says what to do instead."""


class NothingLoadedError(SearchRefusedError):
    """There is no collection to search yet."""


class ModelMismatchError(SearchRefusedError):
    """The configured embedder is not the model the collection was built with."""


@dataclass(frozen=True)
class SearchHit:
    rank: int
    # Cosine similarity: 1 is the same direction, around 0 unrelated.
    score: float
    title: str
    year: int
    author: str
    description: str
    source_file: str
    book_index: int


def search_books(
    store: BookVectorStore,
    embedder: Embedder,
    query: str,
    limit: int,
    author: str | None = None,
    year_from: int | None = None,
    year_to: int | None = None,
) -> list[SearchHit]:
    """The `limit` books closest to `query`, best first, among those the filters let through."""
    if not query.strip():
        raise SearchRefusedError("the query is empty")
    if limit < 1:
        raise SearchRefusedError(f"the limit must be at least 1, got {limit}")
    if year_from is not None and year_to is not None and year_from > year_to:
        raise SearchRefusedError(
            f"year_from {format_year(year_from)} is after year_to {format_year(year_to)}"
        )
    dimension = check_collection_model(store, embedder)
    # Embedded after the name check: with a remote model a refused search costs no API call.
    [vector] = embedder.embed([query])
    if len(vector) != dimension:
        raise ModelMismatchError(
            f"{embedder.model_name!r} made a {len(vector)}-dimensional query vector, but "
            f"collection {store.collection!r} holds {dimension}-dimensional vectors"
        )
    points = store.search(vector.tolist(), limit, book_filter(author, year_from, year_to))
    return [_hit(rank, point) for rank, point in enumerate(points, start=1)]


def check_collection_model(store: BookVectorStore, embedder: Embedder) -> int:
    """Refuse a missing collection or one built with another model; return its vector size.

    Vectors of two models live in unrelated spaces: the nearest books would be noise, not wrong
    enough to notice. A collection that recorded no model is judged by its vector size alone.
    """
    if not store.collection_exists():
        raise NothingLoadedError(
            f"nothing loaded yet: Qdrant collection {store.collection!r} does not exist at "
            f"{store.location}; the next fetch_data run (or the sensor's) loads the books "
            "into it"
        )
    dimension, model_name = store.collection_model()
    if model_name is not None and model_name != embedder.model_name:
        raise ModelMismatchError(
            f"Qdrant collection {store.collection!r} was built with {model_name!r}, but the "
            f"configured embedder is {embedder.model_name!r}: configure {model_name!r} "
            "(BOOK_PIPELINE_EMBEDDER, BOOK_PIPELINE_EMBEDDING_MODEL) or reload the books"
        )
    return dimension


def book_filter(
    author: str | None, year_from: int | None, year_to: int | None
) -> BookFilter | None:
    """Exact author, inclusive year range; both engines answer them from payload indexes."""
    if author is None and year_from is None and year_to is None:
        return None
    return BookFilter(author=author, year_from=year_from, year_to=year_to)


def format_hits_table(hits: list[SearchHit]) -> str:
    """A plain-text table for the terminal, columns padded to their widest cell."""
    rows = [list(_COLUMNS), *(_cells(hit, TABLE_DESCRIPTION_CHARS) for hit in hits)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def hits_markdown(hits: list[SearchHit]) -> str:
    """A markdown table, as Dagster renders run and check metadata."""
    return markdown_table(_COLUMNS, [_cells(hit, MARKDOWN_DESCRIPTION_CHARS) for hit in hits])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines
    )


def _hit(rank: int, point: ScoredPoint) -> SearchHit:
    payload = point.payload
    return SearchHit(
        rank=rank,
        score=point.score,
        title=payload["title"],
        year=payload["year"],
        author=payload["author"],
        description=payload["description"],
        source_file=payload["source_file"],
        book_index=payload["book_index"],
    )


def _cells(hit: SearchHit, description_chars: int) -> list[str]:
    return [
        str(hit.rank),
        f"{hit.score:.3f}",
        hit.title,
        format_year(hit.year),
        hit.author,
        textwrap.shorten(hit.description, description_chars, placeholder=" ..."),
        hit.source_file,
    ]

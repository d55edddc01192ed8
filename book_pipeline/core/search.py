"""Searching the loaded books: by meaning, by words, or for books like given ones.

Three modes answer a query text: `dense` compares meaning (the query is embedded like the books
were), `keyword` scores the query's words against each book's title, author and description
(BM25), and `hybrid`, the default, fuses the two (`HYBRID_FUSION` in `store.base`). With books
to be like (`like`, and `unlike` to steer away from), the search recommends instead: the books
most like all the given ones, by their stored dense vectors, the query text's meaning joining
them when there is one; the given books themselves never come back.

Pure functions on a `BookVectorStore` and an `Embedder`, shared by the CLI, the `query_data` job
and the retrieval asset check, so all three refuse the same things with the same messages.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from book_pipeline.core.books.parsing import format_year
from book_pipeline.core.embedding.base import Embedder
from book_pipeline.core.store.base import (
    DENSE_MODE,
    EDGE_ENGINE,
    KEYWORD_MODE,
    SEARCH_MODES,
    BookFilter,
    BookVectorStore,
    ScoredPoint,
    StoredPoint,
    book_point_id,
)
from book_pipeline.core.store.keyword_vectors import query_keyword_vector

TABLE_DESCRIPTION_CHARS = 60
MARKDOWN_DESCRIPTION_CHARS = 120
_COLUMNS = ("rank", "score", "title", "year", "author", "description", "source file")
# A book named by its file and index, as the refusal of an ambiguous title lists them.
_BOOK_REFERENCE = re.compile(r"^(?P<file>.+):(?P<index>\d+)$")
# Books of one title listed when a title is ambiguous; closest titles named when it is unknown.
_TITLE_CANDIDATES = 10
_CLOSEST_TITLES = 3


class SearchRefusedError(RuntimeError):
    """A search that cannot give meaningful results; the message says what to do instead."""


class NothingLoadedError(SearchRefusedError):
    """There is no collection to search yet."""


class ModelMismatchError(SearchRefusedError):
    """The configured embedder is not the model the collection was built with."""


class UnknownBookError(SearchRefusedError):
    """A `like`/`unlike` title that names no loaded book, or more than one."""


@dataclass(frozen=True)
class SearchHit:
    rank: int
    # Dense: cosine similarity (1 the same direction, around 0 unrelated); keyword: BM25; hybrid
    # and "like": a fused score that only orders the hits.
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
    mode: str | None = None,
    like: Sequence[str] = (),
    unlike: Sequence[str] = (),
) -> list[SearchHit]:
    """The `limit` best books for `query` in `mode` (None: the collection's best, `hybrid` when
    it has keyword vectors), or the books most like the `like` ones (titles, or FILE:INDEX) and
    least like the `unlike` ones; best first, among those the filters let through."""
    if not query.strip() and not like:
        raise SearchRefusedError("the query is empty")
    if unlike and not like:
        raise SearchRefusedError("--unlike steers a --like search: give a book to be like too")
    if limit < 1:
        raise SearchRefusedError(f"the limit must be at least 1, got {limit}")
    if year_from is not None and year_to is not None and year_from > year_to:
        raise SearchRefusedError(
            f"year_from {format_year(year_from)} is after year_to {format_year(year_to)}"
        )
    filters = book_filter(author, year_from, year_to)
    dimension = check_collection_model(store, embedder)
    if like:
        return _hits(
            _recommend(store, embedder, dimension, query, limit, filters, like, unlike, mode)
        )
    mode = search_mode(store, mode)
    if mode == KEYWORD_MODE:
        return _hits(store.keyword_search(query_keyword_vector(query), limit, filters))
    vector = embed_query(store, embedder, dimension, query)
    if mode == DENSE_MODE:
        return _hits(store.search(vector, limit, filters))
    return _hits(store.hybrid_search(vector, query_keyword_vector(query), limit, filters))


def search_mode(store: BookVectorStore, mode: str | None) -> str:
    """The mode asked for, or the collection's best; refused when the collection cannot answer
    it (the previous release's collections hold no keyword vectors until they are upgraded)."""
    if mode is not None and mode not in SEARCH_MODES:
        raise SearchRefusedError(
            f"unknown search mode {mode!r}: expected one of {', '.join(SEARCH_MODES)}"
        )
    modes = store.search_modes()
    if mode is None:
        return modes[0]
    if mode not in modes:
        remedy = (
            "The next load adds them, from the stored books (nothing is embedded again); "
            "searches and other reads never write the store."
            if store.engine == EDGE_ENGINE
            else "Qdrant cannot add them to an existing server collection: `book-pipeline "
            "migrate-store --to-url URL --to-collection NEW` copies it into a new collection "
            "that has them (computed from the stored books, nothing embedded again)."
        )
        raise SearchRefusedError(
            f"Qdrant collection {store.collection!r} at {store.location} holds no keyword "
            f"vectors yet (it was loaded by an earlier release), so it answers the "
            f"{', '.join(modes)} mode only, not {mode!r}. {remedy}"
        )
    return mode


def embed_query(
    store: BookVectorStore, embedder: Embedder, dimension: int, query: str
) -> list[float]:
    """The query's dense vector, checked against the collection's `dimension`.

    Called after `check_collection_model`: with a remote model a refused search costs no API
    call.
    """
    [vector] = embedder.embed([query])
    if len(vector) != dimension:
        raise ModelMismatchError(
            f"{embedder.model_name!r} made a {len(vector)}-dimensional query vector, but "
            f"collection {store.collection!r} holds {dimension}-dimensional vectors"
        )
    return vector.tolist()


def _recommend(
    store: BookVectorStore,
    embedder: Embedder,
    dimension: int,
    query: str,
    limit: int,
    filters: BookFilter | None,
    like: Sequence[str],
    unlike: Sequence[str],
    mode: str | None,
) -> list[ScoredPoint]:
    if mode == KEYWORD_MODE:
        raise SearchRefusedError(
            "--like compares the books' meaning (their dense vectors): it has no keyword mode"
        )
    liked = [find_book(store, embedder, dimension, reference) for reference in like]
    disliked = [find_book(store, embedder, dimension, reference) for reference in unlike]
    positives = [_dense(point) for point in liked]
    if query.strip():
        positives.append(embed_query(store, embedder, dimension, query))
    return store.recommend(
        positives,
        [_dense(point) for point in disliked],
        limit,
        filters,
        except_ids=[point.id for point in (*liked, *disliked)],
    )


def find_book(
    store: BookVectorStore, embedder: Embedder, dimension: int, reference: str
) -> StoredPoint:
    """The one loaded book `reference` names: FILE:INDEX, or its exact title, or a title that
    differs only in case. Refused, with the candidates, when it names none or several."""
    reference = reference.strip()
    if not reference:
        raise UnknownBookError("a --like or --unlike book is empty: give its title or FILE:INDEX")
    match = _BOOK_REFERENCE.match(reference)
    if match is not None:
        point_id = book_point_id(match["file"], int(match["index"]))
        found = store.retrieve([point_id], with_vectors=True)
        if found:
            return found[0]
    matches = store.books_titled(reference, _TITLE_CANDIDATES)
    similar = _similar_titles(store, embedder, dimension, reference) if not matches else []
    if not matches:
        # The user's capitals need not be the catalogue's: "dracula" is Dracula.
        wanted = reference.casefold()
        titles = {point.payload["title"] for point in similar}
        for title in sorted(title for title in titles if title.casefold() == wanted):
            matches.extend(store.books_titled(title, _TITLE_CANDIDATES))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        closest = list(dict.fromkeys(point.payload["title"] for point in similar))
        hint = (
            "; the closest titles: " + ", ".join(repr(t) for t in closest[:_CLOSEST_TITLES])
            if closest
            else ""
        )
        raise UnknownBookError(
            f"no loaded book is titled {reference!r}{hint}. Give the exact title, or the "
            "book's file and index as FILE:INDEX"
        )
    listed = "\n".join(
        f"  {_reference(point)}  ({point.payload['title']}, {format_year(point.payload['year'])}, "
        f"{point.payload['author']})"
        for point in matches
    )
    raise UnknownBookError(
        f"{len(matches)} loaded books are titled {reference!r}:\n{listed}\n"
        f"Pick one by its file and index, e.g. --like {_reference(matches[0])!r}"
    )


def _similar_titles(
    store: BookVectorStore, embedder: Embedder, dimension: int, title: str
) -> list[ScoredPoint]:
    """The books whose words (or, in a collection without keyword vectors, meaning) come
    closest to a title that matched none exactly."""
    if KEYWORD_MODE in store.search_modes():
        return store.keyword_search(query_keyword_vector(title), _TITLE_CANDIDATES)
    return store.search(embed_query(store, embedder, dimension, title), _TITLE_CANDIDATES)


def _reference(point: StoredPoint) -> str:
    return f"{point.payload['source_file']}:{point.payload['book_index']}"


def _dense(point: StoredPoint) -> list[float]:
    assert point.vector is not None, f"point {point.id} came without its vector"
    return point.vector


def _hits(points: list[ScoredPoint]) -> list[SearchHit]:
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

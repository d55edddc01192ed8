"""BM25 keyword vectors: a book's title, author and description as a sparse vector.

Computed here, on the client, with `qdrant_edge.Bm25` (the tokens of fastembed's `Qdrant/bm25`:
lowercase, English stop words and Snowball stemming, plus ASCII folding so that "bronte" is
"Brontë" and "garcia marquez" "García Márquez") for both engines, so a collection answers
the same keyword query the same way in Edge and on a server. The stored vector holds each
token's term-frequency weight (BM25's k, b and average length); the engine multiplies it by the
token's inverse document frequency at query time (the collection's IDF modifier), so the IDF
follows the books as they are loaded and deleted. A query vector weighs each of its tokens 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import qdrant_edge as edge

from book_pipeline.core.books.parsing import BookRecord

# The sparse vector's name in both engines (the dense vector keeps the unnamed default). Named
# for what its tokens are: issue 18's collections hold "bm25", whose tokens kept their accents,
# so a collection without this name gets it from its payloads when it is opened (Edge) or copied.
KEYWORD_VECTOR_NAME = "bm25_ascii"


@dataclass(frozen=True)
class Bm25Parameters:
    """BM25's document-side constants; a change needs the keyword vectors computed again."""

    k: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0


BM25_PARAMETERS = Bm25Parameters()


@dataclass(frozen=True)
class SparseVector:
    """Token ids and their weights, as either engine stores them."""

    indices: list[int]
    values: list[float]


def keyword_text(title: str, author: str, description: str) -> str:
    """What a keyword search matches: the author counts as much as the title's words."""
    return f"{title}\n{author}\n{description}"


def book_keyword_vector(book: BookRecord) -> SparseVector:
    return document_keyword_vector(keyword_text(book.title, book.author, book.description))


def document_keyword_vector(text: str) -> SparseVector:
    vector = _bm25().embed_document(text)
    return SparseVector(list(vector.indices), list(vector.values))


def query_keyword_vector(text: str) -> SparseVector:
    vector = _bm25().embed_query(text)
    return SparseVector(list(vector.indices), list(vector.values))


@cache
def _bm25() -> edge.Bm25:
    parameters = BM25_PARAMETERS
    return edge.Bm25(
        edge.Bm25Config(
            k=parameters.k, b=parameters.b, avg_len=parameters.avg_len, ascii_folding=True
        )
    )

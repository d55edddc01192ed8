"""The default search: hybrid (dense and BM25 fused by `HYBRID_FUSION`), with the books whose
title or author holds the query lifted above the rest.

Why (docs/search.md has the figures): a bookstore customer mostly types an author or a few title
words. Distribution-based score fusion rescales each side by its candidates' mean and spread, so
when only one or two books contain a surname the keyword side has no spread and its right answer
loses to the dense side's guesses ("kerouac"); reciprocal rank fusion finds those but costs
long descriptive queries (SciFact) their quality. So the fusion is left as it is, and a second,
cheap query on the title-and-author trigrams (`name_vectors`, an index: no scan) finds the
books whose titles and authors share most of the query's trigrams; for those candidates alone,
`share_of_query_held` measures word by word how much of the query their title and author hold:
the same 0-to-1 scale on every collection and for every query, which a threshold can read. A
book holding more than `threshold` of the query gets up to `weight` added to its fused score
(DBSF's are at most 2, one per side): a book whose title or author is the whole query comes
first, one that is a letter or two off ("hemmingway") comes up, and a long query, of which no
title holds most words, is ranked by the fusion alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from book_pipeline.core.store.base import BookFilter, BookVectorStore, ScoredPoint
from book_pipeline.core.store.keyword_vectors import query_keyword_vector
from book_pipeline.core.store.name_vectors import (
    NAME_VECTOR_NAME,
    query_name_vector,
    share_of_query_held,
)


@dataclass(frozen=True)
class NameMatchLift:
    """How much a book whose title and author hold the query is lifted.

    threshold: the share of the query a book's title and author must hold before it is lifted
    at all (a long query, or a short one about something else, holds less). weight:
    the lift of a book that holds all of the query, the lift growing linearly from 0 at the
    threshold. candidates: the books the trigram query returns, and at least as many fused.
    """

    threshold: float = 0.6
    weight: float = 2.0
    candidates: int = 50


NAME_MATCH_LIFT = NameMatchLift()


def default_search(
    store: BookVectorStore,
    query: str,
    vector: Sequence[float],
    limit: int,
    book_filter: BookFilter | None = None,
    lift: NameMatchLift = NAME_MATCH_LIFT,
) -> list[ScoredPoint]:
    """The hybrid search's books for `query` (`vector` its embedding), those whose title and
    author hold the query lifted."""
    fused = store.hybrid_search(
        vector, query_keyword_vector(query), max(limit, lift.candidates), book_filter
    )
    name_vector = query_name_vector(query)
    if not name_vector.indices:
        return fused[:limit]
    candidates = store.keyword_search(
        name_vector, lift.candidates, book_filter, using=NAME_VECTOR_NAME
    )
    held = [
        ScoredPoint(
            point.id,
            share_of_query_held(query, point.payload["title"], point.payload["author"]),
            point.payload,
        )
        for point in candidates
    ]
    return lift_name_matches(fused, held, limit, lift)


def lift_name_matches(
    fused: Sequence[ScoredPoint],
    names: Sequence[ScoredPoint],
    limit: int,
    lift: NameMatchLift = NAME_MATCH_LIFT,
) -> list[ScoredPoint]:
    """`fused` with each of `names` (scored by the share of the query they hold, 0 to 1)
    lifted; a name match the fusion did not return starts from 0, below any fused book."""
    points = {point.id: point for point in fused}
    scores = {point.id: point.score for point in fused}
    for match in names:
        share_above = (match.score - lift.threshold) / (1.0 - lift.threshold)
        if share_above <= 0:
            continue
        points.setdefault(match.id, match)
        scores[match.id] = scores.get(match.id, 0.0) + lift.weight * min(share_above, 1.0)
    ranked = sorted(scores, key=lambda point_id: -scores[point_id])[:limit]
    return [
        ScoredPoint(point_id, scores[point_id], points[point_id].payload) for point_id in ranked
    ]

"""One file's books turned into vectors for the load: through the embedding cache, so only
texts this model has never seen are paid for, and within the run's token budget."""

from dataclasses import dataclass
from functools import partial

import diskcache
import numpy as np

from book_pipeline.core.books.parsing import ParsedBookFile
from book_pipeline.core.embedding.base import Embedder
from book_pipeline.core.embedding.cache import embed_with_cache
from book_pipeline.core.embedding.costs import TokenBudget, count_tokens


@dataclass(frozen=True)
class EmbeddedBookFile:
    file: ParsedBookFile
    # float32, one row per book: a quarter of the pickle size of a list of Python floats.
    vectors: np.ndarray
    model_name: str
    cache_hits: int
    cache_misses: int
    # What the misses cost: the tokens the endpoint billed (0 for a local model) and seconds.
    tokens: int = 0
    seconds: float = 0.0
    # What the hits would have cost, for a model billed by the token.
    tokens_saved: int | None = None


def embed_book_file(
    model: Embedder,
    cache: diskcache.Cache,
    book_file: ParsedBookFile,
    billed_by_token: bool,
    budget: TokenBudget | None = None,
) -> EmbeddedBookFile:
    """The file's books embedded, the cache asked first. Billed by the token, the texts to pay
    for are counted before anything is sent, and with a `budget` reserved under the file's name:
    `TokenBudgetExceeded` when they do not fit, and nothing was sent."""
    embedded = embed_with_cache(
        model,
        cache,
        [book.embedding_text for book in book_file.books],
        count_tokens=count_tokens if billed_by_token else None,
        admit=None if budget is None else partial(budget.reserve, book_file.file_name),
    )
    return EmbeddedBookFile(
        file=book_file,
        vectors=embedded.vectors,
        model_name=model.model_name,
        cache_hits=embedded.cache_hits,
        cache_misses=embedded.cache_misses,
        tokens=embedded.tokens,
        seconds=embedded.seconds,
        tokens_saved=embedded.tokens_saved,
    )

"""Vectors already paid for: a persistent cache keyed by model and text.

A re-run, a re-execution or an edited file embeds only the texts this model has never seen.
diskcache keeps it in sqlite, safe for several processes at once (multiprocess executor, a
search while a run loads).
"""

import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import diskcache
import numpy as np

from book_pipeline.core.books.files import BYTES_PER_MB
from book_pipeline.core.embedding.base import Embedder, UsageReportingEmbedder, WrappedEmbedder
from book_pipeline.core.embedding.costs import TokenBudget
from book_pipeline.core.runtime.disk_space import naming_full_disk
from book_pipeline.core.runtime.fail_points import BEFORE_EMBEDDING, fail_point
from book_pipeline.core.settings import VARIABLES


@dataclass(frozen=True)
class CachedEmbeddings:
    vectors: np.ndarray
    cache_hits: int
    cache_misses: int
    # What embedding the misses cost: the tokens the endpoint billed (0 for a local model,
    # which no one bills by the token) and the seconds it took.
    tokens: int = 0
    seconds: float = 0.0
    # The tokens the hits would have cost; None when the texts were not counted.
    tokens_saved: int | None = None


def cache_key(model_name: str, text: str) -> str:
    return f"{model_name}:{hashlib.sha256(text.encode()).hexdigest()}"


def open_embedding_cache(
    directory: Path, size_limit_mb: int = VARIABLES.embedding_cache_mb.default
) -> diskcache.Cache:
    """One open cache per folder, bound and process: opening costs milliseconds, a step's budget.

    Bounded by `size_limit_mb` (`BOOK_PIPELINE_EMBEDDING_CACHE_MB`): beyond it, each write
    evicts the vectors stored longest ago (diskcache's least-recently-stored policy, which
    costs no write on a read). A diskcache Cache is safe to share between threads, and other
    processes open their own.
    """
    # Through one cached function whatever the call's form, so that every caller gets the same
    # open Cache (and closing it closes it for all).
    return _open_bounded_cache(directory, size_limit_mb)


@functools.cache
def _open_bounded_cache(directory: Path, size_limit_mb: int) -> diskcache.Cache:
    with naming_full_disk(directory):
        return diskcache.Cache(
            str(directory),
            size_limit=size_limit_mb * BYTES_PER_MB,
            eviction_policy="least-recently-stored",
        )


def embed_with_cache(
    embedder: Embedder,
    cache: diskcache.Cache,
    texts: Sequence[str],
    count_tokens: Callable[[Sequence[str]], int] | None = None,
    admit: Callable[[int], None] | None = None,
) -> CachedEmbeddings:
    """Look every text up, embed the misses in one call, store them, keep the input order.

    With `count_tokens` (an embedder paid by the token), the misses are counted before any is
    sent and `admit` is told their count: it raises to send nothing (a run's budget); the hits
    are counted as tokens saved.
    """
    keys = [cache_key(embedder.model_name, text) for text in texts]
    found: dict[int, np.ndarray] = {}
    for position, key in enumerate(keys):
        cached = cache.get(key)
        if cached is not None:
            found[position] = np.frombuffer(cached, dtype=np.float32)
    missing = [position for position in range(len(texts)) if position not in found]
    missing_texts = [texts[position] for position in missing]
    tokens_saved = None
    if count_tokens is not None:
        tokens_saved = count_tokens([texts[position] for position in found])
        if admit is not None:
            admit(count_tokens(missing_texts))
    tokens, seconds = 0, 0.0
    if missing:
        fail_point(BEFORE_EMBEDDING)
        started = time.perf_counter()
        if isinstance(embedder, UsageReportingEmbedder):
            new_vectors, tokens = embedder.embed_with_usage(missing_texts)
        else:
            new_vectors = embedder.embed(missing_texts)
        seconds = time.perf_counter() - started
        with naming_full_disk(Path(cache.directory)), cache.transact():
            for position, vector in zip(missing, new_vectors, strict=True):
                cache.set(keys[position], vector.astype(np.float32).tobytes())
                found[position] = vector
    vectors = (
        np.vstack([found[position] for position in range(len(texts))])
        if texts
        else np.zeros((0, embedder.dimension), dtype=np.float32)
    )
    misses = len(missing)
    return CachedEmbeddings(
        vectors,
        cache_hits=len(texts) - misses,
        cache_misses=misses,
        tokens=tokens,
        seconds=seconds,
        tokens_saved=tokens_saved,
    )


class CachedEmbedder(WrappedEmbedder):
    """An embedder that asks the cache first, for texts that may have been embedded already
    (the retrieval check's self probes are books' own texts), and adds the texts it pays for
    to it. It keeps the tokens it was billed; with a budget, it reserves them before sending,
    under `budget_entry` and the texts' digest (`TokenBudgetExceeded` when they do not fit)."""

    def __init__(
        self,
        embedder: Embedder,
        cache: diskcache.Cache,
        count_tokens: Callable[[Sequence[str]], int] | None = None,
        budget: TokenBudget | None = None,
        budget_entry: str = "",
    ) -> None:
        super().__init__(embedder)
        self._cache = cache
        self._count_tokens = count_tokens
        self._budget = budget
        self._budget_entry = budget_entry
        self.tokens = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        admit = None
        if self._budget is not None:
            digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
            admit = partial(self._budget.reserve, f"{self._budget_entry} {digest}")
        embedded = embed_with_cache(self._embedder, self._cache, texts, self._count_tokens, admit)
        self.tokens += embedded.tokens
        return embedded.vectors

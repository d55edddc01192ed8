"""Vectors already paid for: a persistent cache keyed by model and text.

A re-run, a re-execution or an edited file embeds only the texts this model has never seen.
diskcache keeps it in sqlite, safe for several processes at once (multiprocess executor, a
search while a run loads).
"""

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import diskcache
import numpy as np

from book_pipeline.core.disk_space import naming_full_disk
from book_pipeline.core.embedding import Embedder
from book_pipeline.core.fail_points import BEFORE_EMBEDDING, fail_point


@dataclass(frozen=True)
class CachedEmbeddings:
    vectors: np.ndarray
    cache_hits: int
    cache_misses: int


def cache_key(model_name: str, text: str) -> str:
    return f"{model_name}:{hashlib.sha256(text.encode()).hexdigest()}"


@functools.cache
def open_embedding_cache(directory: Path) -> diskcache.Cache:
    """One open cache per folder and process: opening costs milliseconds, a step's budget.

    A diskcache Cache is safe to share between threads, and other processes open their own.
    """
    with naming_full_disk(directory):
        return diskcache.Cache(str(directory))


def embed_with_cache(
    embedder: Embedder, cache: diskcache.Cache, texts: Sequence[str]
) -> CachedEmbeddings:
    """Look every text up, embed the misses in one call, store them, keep the input order."""
    keys = [cache_key(embedder.model_name, text) for text in texts]
    found: dict[int, np.ndarray] = {}
    for position, key in enumerate(keys):
        cached = cache.get(key)
        if cached is not None:
            found[position] = np.frombuffer(cached, dtype=np.float32)
    missing = [position for position in range(len(texts)) if position not in found]
    if missing:
        fail_point(BEFORE_EMBEDDING)
        new_vectors = embedder.embed([texts[position] for position in missing])
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
    return CachedEmbeddings(vectors, cache_hits=len(texts) - misses, cache_misses=misses)

"""The embedding cache: texts already paid for are never paid for again."""

from pathlib import Path

import pytest

from book_pipeline.core.books.files import BYTES_PER_MB
from book_pipeline.core.embedding.cache import (
    CachedEmbedder,
    embed_with_cache,
    open_embedding_cache,
)
from book_pipeline.core.embedding.costs import TokenBudget, TokenBudgetExceeded, count_tokens
from book_pipeline.core.embedding.openai_endpoint import OpenAIEmbedder
from book_pipeline.core.settings import VARIABLES
from book_pipeline_tests.support.embedders import CountingEmbedder
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
)


def test_cached_embedder_pays_only_for_new_texts_within_the_budget(tmp_path: Path) -> None:
    """What the retrieval check embeds its probes with: the cache first, then the budget."""
    state = EmbeddingsServerState(dimensions=12)
    cache = open_embedding_cache(tmp_path / "cache")
    book_texts = ["a lighthouse keeper in a storm", "a detective on a train"]
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(api_key="sk-test", base_url=base_url)
        embed_with_cache(embedder, cache, book_texts)
        budget = TokenBudget(tmp_path / "budget.sqlite", "run-1", count_tokens(book_texts) - 1)
        probes = CachedEmbedder(embedder, cache, count_tokens, budget, "probe")
        requests_before = len(state.requests)

        probes.embed(book_texts[:1])
        assert (len(state.requests), probes.tokens) == (requests_before, 0)
        with pytest.raises(TokenBudgetExceeded, match=r"^probe [0-9a-f]{16} was not embedded"):
            probes.embed(["a query nobody embedded " * 20])
        assert len(state.requests) == requests_before
        probes.embed(["a short query"])

    assert probes.tokens == count_tokens(["a short query"]) == budget.spent()


def test_the_cache_stays_within_its_size_bound_and_keeps_the_newest_vectors(
    tmp_path: Path,
) -> None:
    embedder = CountingEmbedder()
    cache = open_embedding_cache(tmp_path / "cache", size_limit_mb=1)
    # 3,000 vectors of 1.5 kB: over four times the bound.
    batches = [[f"book {batch}-{n}" for n in range(100)] for batch in range(30)]
    for texts in batches:
        embed_with_cache(embedder, cache, texts)

    assert cache.volume() <= 1.1 * BYTES_PER_MB
    assert embed_with_cache(embedder, cache, batches[-1]).cache_hits == 100
    assert embed_with_cache(embedder, cache, batches[0]).cache_misses == 100


def test_the_default_bound_is_the_documented_one(tmp_path: Path) -> None:
    cache = open_embedding_cache(tmp_path / "cache")
    assert cache.size_limit == VARIABLES.embedding_cache_mb.default * BYTES_PER_MB == 1024**3

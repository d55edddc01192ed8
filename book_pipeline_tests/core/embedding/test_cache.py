"""The embedding cache: texts already paid for are never paid for again."""

from pathlib import Path

import pytest

from book_pipeline.core.embedding.cache import (
    CachedEmbedder,
    embed_with_cache,
    open_embedding_cache,
)
from book_pipeline.core.embedding.costs import TokenBudget, TokenBudgetExceeded, count_tokens
from book_pipeline.core.embedding.openai_endpoint import OpenAIEmbedder
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

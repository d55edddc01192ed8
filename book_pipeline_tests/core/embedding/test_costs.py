"""Token counts, prices and a run's token budget, held across processes."""

import multiprocessing
from pathlib import Path

import pytest

from book_pipeline.core.embedding.costs import (
    OPENAI_EMBEDDING_PRICES_PER_MTOK,
    TokenBudget,
    TokenBudgetExceeded,
    cost_usd,
    count_tokens,
    counts_exactly,
    price_per_mtok,
)


def test_tokens_are_counted_as_openais_cl100k_base_counts_them() -> None:
    # Token ids from tiktoken's cl100k_base: "hello world" is [15339, 1917].
    assert count_tokens(["hello world"]) == 2
    assert count_tokens(["hello world", "hello world", ""]) == 4
    # A special token's text is read as plain text, as the embeddings endpoint reads it.
    assert count_tokens(["<|endoftext|>"]) > 1


def test_prices_come_from_the_table_the_override_or_nowhere() -> None:
    assert price_per_mtok("openai", "text-embedding-3-small", None) == 0.02
    assert set(OPENAI_EMBEDDING_PRICES_PER_MTOK) == {
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    }
    assert price_per_mtok("openai", "text-embedding-3-small", 0.01) == 0.01
    assert price_per_mtok("openai", "someone-elses-model", 0.5) == 0.5
    # Unknown is unknown, not free; a local model is billed by no one.
    assert price_per_mtok("openai", "someone-elses-model", None) is None
    assert price_per_mtok("local", "all-MiniLM-L6-v2-onnx-int8", None) == 0.0
    assert cost_usd(1_500_000, 0.02) == pytest.approx(0.03)
    assert cost_usd(1_500_000, None) is None
    assert counts_exactly("openai", "text-embedding-3-large")
    assert not counts_exactly("openai", "someone-elses-model")
    assert not counts_exactly("local", "text-embedding-3-small")


def test_the_budget_refuses_the_file_that_would_pass_it(tmp_path: Path) -> None:
    budget = TokenBudget(tmp_path / "budget.sqlite", "run-1", limit=100)
    budget.reserve("a.txt", 60)
    budget.reserve("a.txt", 60)  # a retried step: its reservation stands, nothing is added
    with pytest.raises(TokenBudgetExceeded) as refused:
        budget.reserve("b.txt", 41)
    message = str(refused.value)
    assert "b.txt was not embedded: it needs 41 token(s)" in message
    assert "already spent 60 of its budget of 100" in message
    assert "BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN" in message
    budget.reserve("c.txt", 40)
    assert budget.spent() == 100
    # Another run has its own budget.
    TokenBudget(tmp_path / "budget.sqlite", "run-2", limit=100).reserve("b.txt", 41)
    assert refused.value.for_a_file().endswith(
        ". It stays pending; the next run embeds it, within its own budget"
    )
    with pytest.raises(TokenBudgetExceeded) as too_big:
        TokenBudget(tmp_path / "budget.sqlite", "run-3", limit=100).reserve("d.txt", 101)
    assert "needs more than the whole budget: raise it" in too_big.value.for_a_file()


def _reserve_in_a_process(path: str, file_name: str, tokens: int) -> bool:
    try:
        TokenBudget(Path(path), "run-shared", limit=1000).reserve(file_name, tokens)
    except TokenBudgetExceeded:
        return False
    return True


def test_processes_share_one_budget(tmp_path: Path) -> None:
    """Twenty processes race for a budget that holds ten of their files: ten get it."""
    path = str(tmp_path / "budget.sqlite")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        granted = pool.starmap(
            _reserve_in_a_process, [(path, f"file_{i}.txt", 100) for i in range(20)]
        )
    assert sum(granted) == 10
    assert TokenBudget(Path(path), "run-shared", limit=1000).spent() == 1000
